//! Metrics for flow matching: W1/W2 by exact OT, MMD, likelihood by change of variables, path energy.
