// Replaced by the worker tests when they land.
