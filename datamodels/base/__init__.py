"""The base layer both packages build on; imports nothing else of ``datamodels``, ``modeldiff`` or
``case_studies``.

Modules: :mod:`~datamodels.base.errors` (:class:`UserError`, the one-line error a user can fix),
:mod:`~datamodels.base.atomic` (files and folders that appear complete or not at all),
:mod:`~datamodels.base.log` (the ``modeldiff`` logger; handlers are installed by the command line
only) and :mod:`~datamodels.base.progress` (progress bars and headings on stderr).
"""
