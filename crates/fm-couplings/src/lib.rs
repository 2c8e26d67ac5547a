//! Couplings for flow matching: independent, exact optimal transport (fast assignment), entropic (Sinkhorn).
