"""Attention variants, one file each, grouped by family. Every module here is imported by
`Registry.discover`, so a new file with a `@register`-ed class is all a variant needs."""
