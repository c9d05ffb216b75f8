"""Study support: a study YAML (two algorithms, attribution, diff, counterfactual settings) run end
to end. Configs: :mod:`~modeldiff.studies.config`; stages: :mod:`~modeldiff.studies.pipeline`;
the whole run and its summary: :mod:`~modeldiff.studies.run`. Shipped studies live in
``case_studies/`` (one folder each)."""
