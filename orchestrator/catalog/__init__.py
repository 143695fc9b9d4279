"""The work-item template catalog: versioned blueprints (``registry``), their typed parameters
(``params``), and instantiation into items and a workflow saga (``instantiate``)."""
