"""A toy third-party ctbench generator: an ellipse of soft tissue with one bright blob at a seeded position."""
