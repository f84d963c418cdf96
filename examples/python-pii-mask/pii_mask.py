"""pii-mask: replace e-mail addresses in records with their SHA-256 (hex), so that records can
still be joined and counted by address without carrying it.

Configuration (the processor's ``with:``):

- ``fields``: the fields to hash, as paths (``email``, ``profile.backup_email``). Each must be
  able to hold a string; its value is hashed whatever it looks like; ``null`` stays ``null``; any
  other value fails the record. Without ``fields`` every string in the record that looks like
  an e-mail address is hashed, at any depth (nested records, arrays, maps).
- ``salt``: text prepended to each address before hashing (default ``""``).
- ``normalize``: lower-case and trim addresses before hashing, so that ``Ann@X.org `` and
  ``ann@x.org`` hash alike (default ``true``).

The output schema is the input schema: hashes are strings.
"""

import hashlib
import re

from meshhost_sdk import ConfigError, ConfigErrors, OutputPort, Processor, RecordError, log

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _holds_string(schema):
    """Whether an Avro (field) schema can hold a string."""
    if schema == "string" or (isinstance(schema, dict) and schema.get("type") == "string"):
        return True
    return isinstance(schema, list) and any(_holds_string(branch) for branch in schema)


def _type_name(schema):
    if isinstance(schema, list):
        return " | ".join(_type_name(branch) for branch in schema)
    if isinstance(schema, dict):
        return schema.get("name", schema.get("type"))
    return str(schema)


def _record_schema(schema, named):
    """The record schema ``schema`` is (or holds, as a nullable union), resolving names."""
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):
        records = [s for s in (_record_schema(b, named) for b in schema) if s is not None]
        return records[0] if len(records) == 1 else None
    if isinstance(schema, dict) and schema.get("type") == "record":
        return schema
    return None


def _named_records(schema, named, namespace=""):
    """Collect the record schemas defined in ``schema`` by name and by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_records(branch, named, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            name = schema.get("name", "")
            ns = schema.get("namespace", namespace) if "." not in name else name.rsplit(".", 1)[0]
            named[name] = named[name.rsplit(".", 1)[-1]] = schema
            if ns:
                named[f"{ns}.{name.rsplit('.', 1)[-1]}"] = schema
            for field in schema.get("fields", []):
                _named_records(field.get("type"), named, ns)
        elif kind == "array":
            _named_records(schema.get("items"), named, namespace)
        elif kind == "map":
            _named_records(schema.get("values"), named, namespace)


class PiiMask(Processor):
    def init(self, config, inputs):
        errors = []
        if len(inputs) != 1:
            raise ConfigError("", f"pii-mask takes exactly one input, got {len(inputs)}")
        unknown = sorted(set(config) - {"fields", "salt", "normalize"})
        for key in unknown:
            errors.append(ConfigError(key, "unknown option (expected fields, salt, normalize)"))
        self.salt = config.get("salt", "")
        if not isinstance(self.salt, str):
            errors.append(ConfigError("salt", "must be a string"))
        self.normalize = config.get("normalize", True)
        if not isinstance(self.normalize, bool):
            errors.append(ConfigError("normalize", "must be true or false"))

        schema = inputs[0].schema
        named = {}
        _named_records(schema, named)
        self.paths = None
        if "fields" in config:
            fields = config["fields"]
            if not isinstance(fields, list) or not fields:
                errors.append(ConfigError("fields", "must be a non-empty list of field paths"))
                fields = []
            self.paths = []
            for i, path in enumerate(fields):
                if not isinstance(path, str) or not path:
                    errors.append(ConfigError(f"fields[{i}]", "must be a field path such as email or profile.email"))
                    continue
                problem = self._check_path(schema, named, path)
                if problem:
                    errors.append(ConfigError(f"fields[{i}]", problem))
                else:
                    self.paths.append(path.split("."))
        if errors:
            raise ConfigErrors(errors)
        mode = "fields " + ", ".join(".".join(p) for p in self.paths) if self.paths is not None else "auto-detected e-mail addresses"
        log.info(f"pii-mask hashes {mode}")
        return [OutputPort("out", inputs[0].schema_text)]

    @staticmethod
    def _check_path(schema, named, path):
        current = schema
        parts = path.split(".")
        for depth, name in enumerate(parts):
            record = _record_schema(current, named)
            where = ".".join(parts[:depth]) or "the input record"
            if record is None:
                return f"{where} is not a record, so it has no field {name!r}"
            field = next((f for f in record.get("fields", []) if f.get("name") == name), None)
            if field is None:
                return f"no field {name!r} in {where} (fields: {', '.join(f['name'] for f in record.get('fields', []))})"
            current = field["type"]
        if not _holds_string(current):
            return f"field {path!r} is {_type_name(current)}, not a string"
        return None

    def hash(self, address):
        if self.normalize:
            address = address.strip().lower()
        return hashlib.sha256((self.salt + address).encode("utf-8")).hexdigest()

    def process_record(self, record):
        value = record.value
        if self.paths is None:
            return self._mask_all(value)
        for path in self.paths:
            parent = value
            for name in path[:-1]:
                parent = parent.get(name) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue  # a null parent record: nothing to hash
            current = parent.get(path[-1])
            if current is None:
                continue
            if not isinstance(current, str):
                raise RecordError(f"pii-mask: field {'.'.join(path)!r} is not a string (got {type(current).__name__} {current!r}); cannot hash it")
            parent[path[-1]] = self.hash(current)
        return value

    def _mask_all(self, value):
        if isinstance(value, str):
            return self.hash(value) if EMAIL.match(value.strip()) else value
        if isinstance(value, dict):
            return {k: self._mask_all(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask_all(v) for v in value]
        return value
