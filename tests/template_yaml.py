"""template.yaml as plain data: CloudFormation's short tags (`!Ref`,
`!GetAtt`, `!Sub`, ...) turned into their long forms (`{"Ref": ...}`,
`{"Fn::GetAtt": [resource, attribute]}`, `{"Fn::Sub": ...}`). Read by
tests/alarm_metrics.py and tests/tests/deploy_contract.rs."""

import yaml


class Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix: value}


Loader.add_multi_constructor("!", _tag)


def load(path):
    with open(path) as f:
        return yaml.load(f, Loader=Loader)
