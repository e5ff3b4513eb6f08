"""The model families of hf_bpt3c, one folder each in transformers' own layout (`models/<model_type>/`)."""
