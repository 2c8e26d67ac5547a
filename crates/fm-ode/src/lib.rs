//! ODE solvers for flow matching: a solver trait users extend, Runge-Kutta tableaus, adaptive Dormand-Prince, a conformance kit.
