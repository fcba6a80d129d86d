"""Running requests on a loaded pipeline: prompts, the engine, decoding, the job loop."""
