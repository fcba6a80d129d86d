"""Image files: reading inputs, naming and writing outputs, the metadata they carry."""
