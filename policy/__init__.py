"""The platform's policy pack: rules (pure functions) plus CrossGuard adapters."""
