"""The built-in node types, one module each, registered by name in :mod:`ray_nodes.registry`:
``data_loader``, ``data_preprocessor``, ``train_test_split``, ``feature_scaler``,
``model_trainer`` (its backends in ``trainers``), ``model_evaluator``, ``model_saver``, ``noop``.

Custom node types build on :mod:`ray_nodes.node` (``NodeType``, ``NodeContext``) and
:mod:`ray_nodes.data` (``Split``, ``TrainedModel``), which stay where they are.
"""
