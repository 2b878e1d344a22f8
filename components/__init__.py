"""Platform capabilities, one ComponentResource per module, composed per stack by ``stacks``."""
