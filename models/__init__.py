"""Models of the digital twin: battery physics (``models.physics``) and, later, learned models."""
