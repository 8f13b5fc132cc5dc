"""The steppatch command line."""
