"""The bench suite's Python plugin: the E2E pipeline's filter and projection in one processor
(keep `year >= min_year and country == country`, then keep `fields`, renaming by `rename`)."""

from meshhost_sdk import OutputPort, Processor


class Slim(Processor):
    def init(self, config, inputs):
        self.min_year = config["min_year"]
        self.country = config["country"]
        rename = config.get("rename", {})
        by_name = {f["name"]: f for f in inputs[0].fields()}
        self.fields = [(name, rename.get(name, name)) for name in config["fields"]]
        schema = {
            "type": "record",
            "name": "Slim",
            "namespace": "bench",
            "fields": [dict(by_name[name], name=renamed) for name, renamed in self.fields],
        }
        return [OutputPort("out", schema)]

    def process_record(self, record):
        value = record.value
        if value["year"] >= self.min_year and value["country"] == self.country:
            return {renamed: value[name] for name, renamed in self.fields}
        return None
