"""The Hugging Face Hub: settings, the local cache, which files a pipeline needs, downloads."""
