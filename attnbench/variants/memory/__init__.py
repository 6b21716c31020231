"""Memory / recurrence variants: attention over a long input processed segment by segment,
each segment reading a cache of the previous one (Transformer-XL)."""
