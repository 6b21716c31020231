"""Linear attention and fast-weight programmers (Katharopoulos et al. 2020; Performer;
Schlag, Irie and Schmidhuber 2021; Kasai et al. 2021).

One layer, `LinearAttention`, combines a feature map φ (`feature_maps.py`), an update rule
(sum or delta) and a normalisation (none, attention, sum), and computes it in one of three
forms (`forms.py`): the masked quadratic `parallel` form, the `chunk`ed form (the default;
streamed block by block with its own backward: `chunked.py`) and the token-by-token `recurrent`
form used for decoding. The float64 sequential scan they are all checked against is
`attnbench.reference.linear`.
"""
