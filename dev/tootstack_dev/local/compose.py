"""Compose a root template with its local nested templates into one template (the "composed template").

template.yaml composes parts under templates/ with `AWS::Serverless::Application` and a local `Location`;
`sam package`/`sam deploy` upload each part and CloudFormation creates it as a nested stack. The local
tooling (rehearsal, cost model, IAM check, tests) reads one template instead: each instance is replaced by
its part's resources, renamed `<Instance><LogicalId>` (instance `WebTask`, resource `Definition`:
`WebTaskDefinition`), with the part's parameters replaced by the values the instance passes (or the
part's defaults), its conditions renamed the same way, its mappings merged, and every
`!GetAtt <Instance>.Outputs.<Name>` of the root replaced by that output's value.

What a nested stack does differently and this composition must not hide is refused with InvalidInput:
- a part that reads `AWS::StackName` (in a nested stack it is the nested stack's own name: a part takes
  the root's name as a parameter instead);
- an instance parameter the part does not declare, a missing parameter without default, or a literal
  value outside the part's AllowedValues (CloudFormation refuses these at create time);
- a `Ref` to an instance (a nested stack's physical ID: nothing of the root uses one).
(AWS::CloudFormation::Stack / AWS::Serverless::Application:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudformation-stack.html,
https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-resource-application.html)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from tootstack.errors import InvalidInput

APPLICATION = "AWS::Serverless::Application"
COMPOSED_KEY = "tootstack:composed"
COMPOSE_KEY = "tootstack:compose"     # a part's Metadata: {KeepLogicalIds: true} for a section of the root   # under the composed template's Metadata: instance -> part, resources

_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


def local_location(resource: dict[str, Any]) -> str | None:
    """The local template path of an AWS::Serverless::Application, or None (an S3 URL or a SAR app)."""
    if resource.get("Type") != APPLICATION:
        return None
    location = resource.get("Properties", {}).get("Location")
    if isinstance(location, str) and not location.startswith(("s3://", "https://", "http://")):
        return location
    return None


def compose_template(template: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """`template` with every local AWS::Serverless::Application replaced by its part's resources."""
    from tootstack_dev.local.template import load_template

    resources = template.get("Resources", {})
    instances = {lid: loc for lid, r in resources.items() if (loc := local_location(r))}
    if not instances:
        return template
    outputs: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    composed_meta: dict[str, Any] = {}
    new_resources: dict[str, Any] = {}
    for lid, resource in resources.items():
        if lid not in instances:
            new_resources[lid] = resource
            continue
        part_path = (base_dir / instances[lid]).resolve()
        part = load_template(part_path)  # itself composed: parts may compose parts
        part_resources, part_outputs, part_conditions = _instantiate(lid, resource, part, template, part_path)
        for new_id in part_resources:
            if new_id in resources or new_id in new_resources:
                raise InvalidInput(f"{lid}: composed logical ID {new_id} is already a resource of the root")
        new_resources.update(part_resources)
        for name, body in part_conditions.items():
            existing = template.setdefault("Conditions", {}).get(name)
            if existing is not None and existing != body:
                raise InvalidInput(f"{lid}: composed condition {name} differs from the root's condition of that name")
            template["Conditions"][name] = body
        outputs[lid] = part_outputs
        members[lid] = list(part_resources)
        composed_meta[lid] = {"Location": instances[lid], "Resources": list(part_resources)}
    template["Resources"] = new_resources
    for lid, resource in new_resources.items():
        if lid in {m for ms in members.values() for m in ms}:
            continue
        new_resources[lid] = _wire(resource, outputs, members)
    if "Outputs" in template:
        template["Outputs"] = _wire(template["Outputs"], outputs, members)
    template.setdefault("Metadata", {})[COMPOSED_KEY] = composed_meta
    return template


def _instantiate(instance: str, resource: dict[str, Any], part: dict[str, Any], root: dict[str, Any],
                 part_path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    declared = part.get("Parameters", {})
    given = dict(resource.get("Properties", {}).get("Parameters", {}))
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InvalidInput(f"{instance}: {part_path.name} declares no parameter {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            value = given[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise InvalidInput(f"{instance}: parameter {name} of {part_path.name} has no value and no default")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # CloudFormation passes every nested-stack parameter as a string
        allowed = spec.get("AllowedValues")
        if allowed is not None and isinstance(value, str) and value not in [str(a) for a in allowed]:
            raise InvalidInput(f"{instance}: parameter {name}={value!r} is not one of {allowed}")
        values[name] = value
    for name, body in part.get("Mappings", {}).items():
        existing = root.setdefault("Mappings", {}).get(name)
        if existing is not None and existing != body:
            raise InvalidInput(f"{instance}: mapping {name} of {part_path.name} differs from the root's")
        root["Mappings"][name] = body
    # A section of the root (Metadata tootstack:compose KeepLogicalIds, instantiated once) keeps the logical
    # IDs its resources had in the root; a module instantiated per role prefixes them with the instance.
    keep = bool(part.get("Metadata", {}).get(COMPOSE_KEY, {}).get("KeepLogicalIds"))
    prefix = "" if keep else instance
    ids = {lid: prefix + lid for lid in part.get("Resources", {})}
    conditions = {name: prefix + name for name in part.get("Conditions", {})}
    rename = _Renamer(instance, values, ids, conditions, part_path.name)
    rename.decide(part.get("Conditions", {}))
    instance_condition = resource.get("Condition")
    new_conditions = {conditions[n]: rename(body) for n, body in part.get("Conditions", {}).items()
                      if n not in rename.decided}
    new_resources: dict[str, Any] = {}
    for lid, res in part.get("Resources", {}).items():
        res = copy.deepcopy(res)
        out = {k: rename(v) for k, v in res.items() if k not in ("Condition", "DependsOn")}
        if "Condition" in res:
            if rename.decided.get(res["Condition"]) is False:
                continue
            if res["Condition"] not in rename.decided:
                out["Condition"] = conditions[res["Condition"]]
        if instance_condition:
            if "Condition" in out:
                both = f"{out['Condition']}And{instance_condition}"
                new_conditions[both] = {"Fn::And": [{"Condition": out["Condition"]}, {"Condition": instance_condition}]}
                out["Condition"] = both
            else:
                out["Condition"] = instance_condition
        depends = res.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else list(depends)
        depends = [ids[d] for d in depends]
        outer = resource.get("DependsOn", [])
        depends += [outer] if isinstance(outer, str) else list(outer)
        if depends:
            out["DependsOn"] = depends
        new_resources[ids[lid]] = out
    outputs = {name: rename(spec["Value"]) for name, spec in part.get("Outputs", {}).items()}
    return new_resources, outputs, new_conditions


_NO_VALUE = {"Ref": "AWS::NoValue"}


class _Renamer:
    """Rewrites one part's intrinsics into the root's namespace. A part's condition that its literal
    parameters decide (e.g. `Role` = core) is folded: `Fn::If` on it becomes the chosen branch and
    `AWS::NoValue` drops the list item or property, as CloudFormation does, so the composed resource reads
    like one written for that role; other conditions are kept, renamed."""

    def __init__(self, instance: str, values: dict[str, Any], ids: dict[str, str], conditions: dict[str, str],
                 part_name: str) -> None:
        self.instance, self.values, self.ids, self.conditions, self.part_name = instance, values, ids, conditions, part_name
        self.decided: dict[str, bool] = {}

    def decide(self, conditions: dict[str, Any]) -> None:
        for _ in range(len(conditions)):  # conditions may name conditions defined after them
            for name, body in conditions.items():
                if name not in self.decided and (value := self._evaluate(body)) is not None:
                    self.decided[name] = value

    def _evaluate(self, node: Any) -> bool | str | None:
        """A condition's value from literal parameters, or None when it depends on anything else."""
        if isinstance(node, str):
            return node
        if not isinstance(node, dict) or len(node) != 1:
            return None
        (key, arg), = node.items()
        if key == "Ref":
            value = self.values.get(arg)
            return value if isinstance(value, str) else None
        if key == "Condition":
            return self.decided.get(arg)
        items = [self._evaluate(a) for a in arg] if isinstance(arg, list) else []
        if any(i is None for i in items):
            return None
        if key == "Fn::Equals":
            return items[0] == items[1]
        if key == "Fn::Not":
            return not items[0]
        if key == "Fn::And":
            return all(items)
        if key == "Fn::Or":
            return any(items)
        return None

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in (self(i) for i in node) if item != _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1 and "Fn::If" in node and node["Fn::If"][0] in self.decided:
            condition, yes, no = node["Fn::If"]
            return self(yes if self.decided[condition] else no)
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                name, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                return {"Fn::GetAtt": [self.ids.get(name, name), self(attr)]}
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                return {"Fn::If": [self.conditions[arg[0]], self(arg[1]), self(arg[2])]}
            if key == "Condition" and isinstance(arg, str):
                if arg in self.decided:
                    return {"Fn::Equals": ["true", "true" if self.decided[arg] else "false"]}
                return {"Condition": self.conditions[arg]}
            if key == "Fn::Split":
                sep, text = arg[0], self(arg[1])
                return text.split(sep) if isinstance(text, str) else {"Fn::Split": [sep, text]}
        out = {k: self(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v != _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::StackName":
            raise InvalidInput(f"{self.part_name} reads AWS::StackName, which in a nested stack is the nested "
                               "stack's own name: take the root's name as a parameter")
        if name in self.values:
            return copy.deepcopy(self.values[name])
        if name in self.ids:
            return {"Ref": self.ids[name]}
        return {"Ref": name}

    def _sub(self, arg: Any) -> Any:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], dict(arg[1]))
        variables = {k: self(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return match.group(0)
            if name == "AWS::StackName":
                self._ref(name)
            head, _, attr = name.partition(".")
            if head in self.ids:
                return "${" + self.ids[head] + ("." + attr if attr else "") + "}"
            if name in self.values:
                value = self.values[name]
                if isinstance(value, str):
                    return value.replace("${", "${!")
                if isinstance(value, dict) and list(value) == ["Ref"]:
                    return "${" + value["Ref"] + "}"   # the root's own name, as written in the root
                if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
                    att = value["Fn::GetAtt"]
                    return "${" + (att if isinstance(att, str) else ".".join(att)) + "}"
                variables[name] = copy.deepcopy(value)
            return match.group(0)

        text = _SUB_VAR.sub(replace, text)
        return {"Fn::Sub": [text, variables] if variables else text}


def _wire(node: Any, outputs: dict[str, dict[str, Any]], members: dict[str, list[str]]) -> Any:
    """Replace the root's references to instances by what they stand for."""
    if isinstance(node, list):
        return [_wire(item, outputs, members) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Fn::GetAtt":
            name, attr = arg.split(".", 1) if isinstance(arg, str) else arg
            if name in outputs:
                if not isinstance(attr, str) or not attr.startswith("Outputs."):
                    raise InvalidInput(f"!GetAtt {name}.{attr}: a nested stack has only Outputs.<Name>")
                output = attr.split(".", 1)[1]
                if output not in outputs[name]:
                    raise InvalidInput(f"!GetAtt {name}.{attr}: the part has no output {output}")
                return copy.deepcopy(outputs[name][output])
        if key == "Ref" and arg in outputs:
            raise InvalidInput(f"!Ref {arg}: the root must use the part's outputs, not the nested stack's ID")
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], dict(arg[1]))
            for match in _SUB_VAR.finditer(text):
                head, _, attr = match.group(1).partition(".")
                if head in outputs and match.group(1) not in variables:
                    variables[match.group(1)] = _wire({"Fn::GetAtt": [head, attr]}, outputs, members)
            variables = {k: _wire(v, outputs, members) for k, v in variables.items()}
            return {"Fn::Sub": [text, variables] if variables else text}
    out = {}
    for key, value in node.items():
        if key == "DependsOn":
            deps = [value] if isinstance(value, str) else list(value)
            if any(d in members for d in deps):
                value = [m for d in deps for m in members.get(d, [d])]
        out[key] = _wire(value, outputs, members)
    return out
