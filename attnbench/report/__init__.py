"""Tables (and, later, figures and HTML) from results. Reads only results records."""
