"""datamodels: everything up to the attribution matrix (data, recipes, training, store, TRAK, regression)."""
