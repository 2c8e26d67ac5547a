//! Training for flow matching: matchers (path + coupling), the CFM loss, the Trainer, the MLP field bridge and model files.
