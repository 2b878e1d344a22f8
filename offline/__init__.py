"""Offline tooling: run the program under mocks, render and validate what it would create."""
