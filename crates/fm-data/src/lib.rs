//! Toy 2-D distributions and user data files (CSV, .npy) for flow matching.
