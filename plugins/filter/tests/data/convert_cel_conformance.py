#!/usr/bin/env python3
"""Convert the CEL spec's "simple" conformance test data to one JSON file.

google/cel-spec publishes its conformance tests as data: the protobuf text
format files tests/simple/testdata/*.textproto (SimpleTestFile messages, see
proto/cel/expr/conformance/test/simple.proto). This script reads them from a
cel-spec git repository at HEAD with `git show` and writes them as JSON; it
converts published data only, no test code is copied.

    convert_cel_conformance.py [CEL_SPEC_REPO] [OUTPUT_JSON]

Output: {"source", "commit", "files": [{"name", "description", "sections":
[{"name", "description", "tests": [...]}]}]}. Each test is a SimpleTest with
its non-oneof fields defaulted as in proto3, plus the result field the file
sets, if any (none means: expect the boolean true). Repeated fields are always
lists; `bindings` is an object; other maps (MapValue.entries, Struct.fields,
TestAllTypes map_*) stay lists of {"key", "value"}. Any/extension names keep
their brackets. int64_value/uint64_value are decimal strings; double_value is
a string too (Python's repr, exact; "Infinity", "-Infinity", "NaN" when not finite); bytes fields are {"base64": ...}; other
strings must be valid UTF-8; enum values are their names.
"""
import base64, json, math, os, re, subprocess, sys

DEFAULT_REPO = "/work/.mirror/google+cel-spec/repo"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cel-conformance.json")
TESTDATA = "tests/simple/testdata/"
TEST_ALL_TYPES = ["proto/cel/expr/conformance/proto2/test_all_types.proto",
                  "proto/cel/expr/conformance/proto2/test_all_types_extensions.proto",
                  "proto/cel/expr/conformance/proto3/test_all_types.proto"]

# Repeated fields of simple.proto, value.proto, eval.proto and checked.proto
# (Reference.overload_id is left out: Decl's Overload.overload_id is singular),
# plus google.protobuf.Struct.fields. main() adds the repeated and map fields
# of TestAllTypes and its extensions (read from the .proto files).
REPEATED = {"section", "test", "type_env", "values", "entries", "errors", "exprs",
            "unknowns", "overloads", "params", "type_params", "arg_types",
            "parameter_types", "elements", "results", "details", "fields"}
TEST_DEFAULTS = {"name": "", "description": "", "expr": "", "disable_macros": False,
                 "disable_check": False, "check_only": False, "type_env": [],
                 "container": "", "locale": "", "bindings": {}}
OBJECT_MAPS = {"bindings"}  # map<string, ...> fields that become JSON objects
BYTES_FIELDS = {"bytes_value", "single_bytes", "repeated_bytes"}
# Fields (or Any type URLs) holding google.protobuf.Any or BytesValue messages,
# whose field `value` is bytes; map_<key>_bytes entries also have bytes values.
BYTES_VALUE_PARENTS = {"[type.googleapis.com/google.protobuf.Any]", "single_any",
                       "repeated_any", "details", "single_bytes_wrapper",
                       "[type.googleapis.com/google.protobuf.BytesValue]",
                       "repeated_bytes_wrapper"}

TOKEN = re.compile(r"""
    (?P<string> "(?:[^"\\\n]|\\.)*" | '(?:[^'\\\n]|\\.)*' )
  | (?P<number> -?(?:0[xX][0-9a-fA-F]+ | (?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fF]? )
  | (?P<ident>  [A-Za-z_][A-Za-z0-9_]* )
  | (?P<symbol> [-{}<>\[\]:,;] )""", re.X)
SKIP = re.compile(r"(?:\s+|#[^\n]*)*")
EXT_NAME = re.compile(r"\[\s*([A-Za-z0-9_./]+)\s*\]")
ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|[xX]([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})"
                    r"|U([0-9a-fA-F]{8})|(.))", re.S)
SIMPLE_ESCAPES = {"n": 10, "t": 9, "r": 13, "\\": 92, "'": 39, '"': 34,
                  "a": 7, "b": 8, "f": 12, "v": 11, "?": 63}
NON_FINITE = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}


def unescape(body):
    """Text of a quoted literal (without quotes) -> the bytes it denotes."""
    out, pos = bytearray(), 0
    for m in ESCAPE.finditer(body):
        out += body[pos:m.start()].encode("utf-8")
        octal, hexa, u4, u8, char = m.groups()
        if octal:
            out.append(int(octal, 8))  # ValueError if above \377
        elif hexa:
            out.append(int(hexa, 16))
        elif u4 or u8:
            out += chr(int(u4 or u8, 16)).encode("utf-8")
        elif char in SIMPLE_ESCAPES:
            out.append(SIMPLE_ESCAPES[char])
        else:
            raise ValueError("unknown escape \\" + char)
        pos = m.end()
    return bytes(out + body[pos:].encode("utf-8"))


class Parser:
    """Recursive descent parser for protobuf text format."""

    def __init__(self, text, filename):
        self.text, self.filename, self.pos = text, filename, 0

    def error(self, msg):
        line = self.text.count("\n", 0, self.pos) + 1
        raise SyntaxError(f"{self.filename}:{line}: {msg}")

    def peek(self):
        """The next token as (kind, text), or ("eof", "")."""
        self.pos = SKIP.match(self.text, self.pos).end()
        if self.pos == len(self.text):
            return "eof", ""
        m = TOKEN.match(self.text, self.pos)
        if not m:
            self.error(f"unexpected character {self.text[self.pos]!r}")
        return m.lastgroup, m.group()

    def next(self):
        kind, tok = self.peek()
        self.pos += len(tok)
        return kind, tok

    def accept(self, symbol):
        return self.peek() == ("symbol", symbol) and self.next()

    def parse_fields(self, close, parent):
        """Fields up to `close` ("}", ">" or "" for end of file) -> dict."""
        msg = {}
        while self.peek() != (("symbol", close) if close else ("eof", "")):
            name = self.field_name()
            colon = self.accept(":")
            if self.accept("["):  # list syntax: "name: [a, b]" or "name [{..}, {..}]"
                values = []
                while not self.accept("]"):
                    values.append(self.parse_value(name))
                    if self.peek()[1] != "]" and not self.accept(","):
                        self.error(f"expected ',' or ']' in the list of {name}")
                self.store(msg, parent, name, values, is_list=True)
            else:
                self.store(msg, parent, name, self.parse_value(name, colon))
            self.accept(",") or self.accept(";")
        if close:
            self.next()
        return msg

    def field_name(self):
        self.peek()  # skip whitespace and comments
        m = EXT_NAME.match(self.text, self.pos)
        if m:  # extension or Any type URL: keep the brackets in the key
            self.pos = m.end()
            return "[" + m.group(1) + "]"
        kind, tok = self.next()
        if kind != "ident":
            self.error(f"expected a field name, got {tok!r}")
        return tok

    def parse_value(self, name, colon=True):
        kind, tok = self.peek()
        if tok in ("{", "<"):
            self.next()
            return self.parse_fields("}" if tok == "{" else ">", name)
        if not colon:
            self.error(f"expected ':' after {name}")
        return self.parse_scalar(name)

    def parse_scalar(self, name):
        kind, tok = self.next()
        if kind == "string":  # adjacent literals are concatenated
            literals = [tok]
            while self.peek()[0] == "string":
                literals.append(self.next()[1])
            try:  # bytes; to_json() decides how to represent them
                return b"".join(unescape(lit[1:-1]) for lit in literals)
            except ValueError as e:
                self.error(f"bad string literal: {e}")
        if kind == "symbol" and tok == "-":  # -inf, -infinity, -nan
            kind, tok = self.next()
            if kind != "ident" or tok.lower() not in NON_FINITE:
                self.error(f"unexpected {tok!r} after '-'")
            return -NON_FINITE[tok.lower()]
        if kind == "number":
            if re.fullmatch(r"-?0[xX][0-9a-fA-F]+", tok):
                return int(tok, 16)
            if re.fullmatch(r"-?\d+", tok):
                return int(tok)
            return float(tok.rstrip("fF"))
        if kind == "ident":
            if tok in ("true", "True"):
                return True
            if tok in ("false", "False"):
                return False
            return NON_FINITE.get(tok.lower(), tok)  # else an enum value
        self.error(f"unexpected {tok!r} as value of {name}")

    def store(self, msg, parent, name, value, is_list=False):
        values = [self.to_json(parent, name, v) for v in (value if is_list else [value])]
        if name in OBJECT_MAPS:
            entries = msg.setdefault(name, {})
            for entry in values:
                key = entry.get("key", "") if isinstance(entry, dict) else None
                if not isinstance(key, str) or set(entry) - {"key", "value"} or key in entries:
                    self.error(f"bad or duplicate map entry in {name}")
                entries[key] = entry.get("value", {})
        elif is_list or name in REPEATED or name.strip("[]").split(".")[-1] in REPEATED:
            msg.setdefault(name, []).extend(values)  # [ext.name]: by its last part
        elif name in msg:
            self.error(f"field {name} is not known to be repeated")
        else:
            msg[name] = values[0]

    def to_json(self, parent, name, value):
        """A parsed value in its JSON form (messages are already dicts)."""
        if isinstance(value, bytes):
            if is_bytes_field(parent, name):
                return {"base64": base64.b64encode(value).decode("ascii")}
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                self.error(f"string field {name} is not valid UTF-8: {value!r}")
        if name in ("int64_value", "uint64_value"):
            if type(value) is not int:
                self.error(f"{name} must be an integer")
            return str(value)
        if name == "double_value" and type(value) is int:
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if name == "double_value":
            return repr(value)  # as text: not every JSON reader rounds a number correctly
        return value


def is_bytes_field(parent, name):
    """Whether field `name`, in a message reached through field `parent`, is bytes."""
    return name in BYTES_FIELDS or name == "value" and (
        parent in BYTES_VALUE_PARENTS or re.fullmatch(r"map_\w+_bytes", parent))


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True,
                          capture_output=True).stdout.decode("utf-8")


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_REPO
    out = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUT
    commit = git(repo, "rev-parse", "HEAD").strip()
    for proto in TEST_ALL_TYPES:
        REPEATED.update(re.findall(r"^\s*(?:repeated\s+[\w.]+|map<[^>]*>)\s+(\w+)\s*=",
                                   git(repo, "show", f"HEAD:{proto}"), re.M))
    names = sorted(n for n in git(repo, "ls-tree", "--name-only", "HEAD", TESTDATA).split()
                   if n.endswith(".textproto"))
    files, total = [], 0
    for path in names:
        parsed = Parser(git(repo, "show", f"HEAD:{path}"), path).parse_fields("", "")
        sections = []
        for sec in parsed.get("section", []):
            tests = [dict(TEST_DEFAULTS, **t) for t in sec.get("test", [])]
            sections.append({"name": sec.get("name", ""),
                             "description": sec.get("description", ""), "tests": tests})
        count = sum(len(s["tests"]) for s in sections)
        total += count
        print(f"{os.path.basename(path)}: {count} tests in {len(sections)} sections", file=sys.stderr)
        files.append({"name": parsed.get("name", ""),
                      "description": parsed.get("description", ""), "sections": sections})
    print(f"total: {total} tests in {len(files)} files", file=sys.stderr)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"source": "google/cel-spec tests/simple/testdata", "commit": commit,
                   "files": files}, f, indent=1, sort_keys=False, ensure_ascii=False,
                  allow_nan=False)
        f.write("\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
