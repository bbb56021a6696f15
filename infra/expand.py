"""Print template.yaml as CloudFormation deploys it: the SAM transform
applied (AWS::Serverless::* expanded into the functions, roles, rules and
state machine they make), offline, by the SAM translator that `sam deploy`
uses. Local code paths become placeholder S3 locations, as `sam validate`
does, and the state machine's definition file is inlined so that scanners
read it. Usage: python infra/expand.py template.yaml > expanded.json
"""

import json
import os
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The translator asks for the account's managed policies only to
    resolve policy names; this template names none."""

    def load(self):
        return {}


def main(path):
    # The translator wants a region for its ARNs; the template uses
    # ${AWS::Region} and ${AWS::Partition} everywhere, so any will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(Path(path).read_text())
    root = Path(path).parent
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://placeholder-bucket/" + props["CodeUri"]
        if resource["Type"] == "AWS::Serverless::StateMachine":
            props["Definition"] = json.loads((root / props.pop("DefinitionUri")).read_text())
    expanded = transform(template, {}, NoManagedPolicies())
    json.dump(expanded, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
