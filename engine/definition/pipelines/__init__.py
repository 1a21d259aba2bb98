"""Pipeline administration: one module per part of a pipeline, composed by `PipelineAdmin`."""
