"""YAML for settings files (recipes, studies, prices): a key given twice in one mapping is refused.

PyYAML's ``safe_load`` keeps the last of duplicate keys silently (``lr: 0.1`` then ``lr: 0.01``
trains at 0.01 without a word); here the second one raises ``yaml.YAMLError`` naming the key and
both lines, so every loader's existing "is not valid YAML" message reports it.
"""
from __future__ import annotations

import yaml


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # an unhashable key: the base constructor reports it
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}): keep one",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str):
    """``yaml.safe_load(text)``, refusing duplicate keys (``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
