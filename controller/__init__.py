"""flowpin: a GitOps controller for versioned automation workflows."""

__version__ = "0.1.0"
