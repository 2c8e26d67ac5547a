//! A small reverse-mode autograd on ndarray, an MLP and Adam/AdamW for flow matching.
