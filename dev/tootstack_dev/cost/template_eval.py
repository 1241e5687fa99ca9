"""Evaluate a CloudFormation/SAM template for one set of parameter values, offline.

Conditions, Fn::If, Ref to parameters, Fn::FindInMap, Fn::Select/Join/Sub are resolved; a Ref or GetAtt
to a resource stays a `ResourceRef` so the cost model can follow it (a service to its task definition).
Resources whose Condition is false are left out, like CloudFormation does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tootstack.errors import InvalidInput

NO_VALUE = object()


@dataclass(frozen=True)
class ResourceRef:
    logical_id: str
    attribute: str | None = None   # None for Ref


class TemplateEvaluator:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str] | None = None,
                 region: str = "us-east-1", stack_name: str = "tootstack") -> None:
        self.template = template
        self.region = region
        self.resource_ids = set(template.get("Resources", {}))
        # The role SAM generates for a function or state machine without `Role`, `<LogicalId>Role`
        # (https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-specification-generated-resources-function.html):
        # the template may attach policies to it (e.g. the registry-credentials policies).
        self.resource_ids |= {
            f"{logical_id}Role" for logical_id, resource in (template.get("Resources") or {}).items()
            if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
            and "Role" not in (resource.get("Properties") or {})
        }
        declared = template.get("Parameters", {}) or {}
        given = dict(parameters or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise InvalidInput(f"unknown template parameter(s): {', '.join(unknown)}")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            value = given.get(name, spec.get("Default"))
            allowed = spec.get("AllowedValues")
            if value is not None and allowed and str(value) not in [str(a) for a in allowed]:
                raise InvalidInput(f"parameter {name}={value!r} is not one of {', '.join(map(str, allowed))}")
            if value is None:
                value = f"<{name}>"  # no default: a placeholder; no cost figure depends on such values
            if str(spec.get("Type", "")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                value = [v.strip() for v in str(value).split(",")] if not isinstance(value, list) else value
            self.parameters[name] = value
        self._conditions: dict[str, bool] = {}
        self._pseudo = {
            "AWS::Region": region, "AWS::StackName": stack_name, "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": NO_VALUE,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:123456789012:stack/{stack_name}/0",
        }

    # --- conditions -------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.get("Conditions") or {}).get(name)
            if spec is None:
                raise InvalidInput(f"template refers to undefined condition {name}")
            self._conditions[name] = bool(self._eval_condition(spec))
        return self._conditions[name]

    def _eval_condition(self, spec: Any) -> Any:
        if isinstance(spec, dict) and len(spec) == 1:
            (key, arg), = spec.items()
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return _scalar(a) == _scalar(b)
            if key == "Fn::Not":
                return not self._eval_condition(arg[0])
            if key == "Fn::And":
                return all(self._eval_condition(x) for x in arg)
            if key == "Fn::Or":
                return any(self._eval_condition(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
        return self.resolve(spec)

    # --- values -----------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
        return {k: v for k, v in ((k, self.resolve(x)) for k, x in value.items()) if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resource_ids:
            return ResourceRef(name)
        raise InvalidInput(f"template refers to undefined name {name}")

    def _if(self, arg: list) -> Any:
        cond, yes, no = arg
        return self.resolve(yes if self.condition(cond) else no)

    def _find_in_map(self, arg: list) -> Any:
        name, first, second = (self.resolve(x) for x in arg[:3])
        try:
            return self.template["Mappings"][name][str(first)][str(second)]
        except KeyError as exc:
            raise InvalidInput(f"Fn::FindInMap {name}/{first}/{second} not found") from exc

    def _select(self, arg: list) -> Any:
        index, items = self.resolve(arg[0]), self.resolve(arg[1])
        if isinstance(items, list):
            return items[int(index)]
        return {"Fn::Select": [index, items]}

    def _join(self, arg: list) -> Any:
        sep, items = arg[0], self.resolve(arg[1])
        if isinstance(items, list) and all(isinstance(i, (str, int, float)) for i in items):
            return sep.join(str(i) for i in items)
        return {"Fn::Join": [sep, items]}

    def _sub(self, arg: Any) -> Any:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(_scalar(variables[name]))
            base = name.split(".", 1)[0]
            if base in self.resource_ids:
                return "${" + name + "}"
            value = self._ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical, _, attribute = arg.partition(".")
        else:
            logical, attribute = arg[0], self.resolve(arg[1])
        return ResourceRef(logical, attribute)

    def _get_azs(self, arg: Any) -> list[str]:
        return [f"{self.region}{c}" for c in "abcdef"]

    def _split(self, arg: list) -> Any:
        sep, text = arg[0], self.resolve(arg[1])
        return text.split(sep) if isinstance(text, str) else {"Fn::Split": [sep, text]}

    # --- resources --------------------------------------------------------------------------
    def resources(self) -> dict[str, dict[str, Any]]:
        """Every resource deployed for these parameters: {logical_id: {"Type", "Properties"}} resolved."""
        out: dict[str, dict[str, Any]] = {}
        for logical_id, resource in (self.template.get("Resources") or {}).items():
            cond = resource.get("Condition")
            if cond and not self.condition(cond):
                continue
            props = self.resolve(resource.get("Properties") or {})
            out[logical_id] = {"Type": resource.get("Type", ""), "Properties": props if isinstance(props, dict) else {}}
        return out


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float)) else value


_INTRINSICS = {
    "Ref": TemplateEvaluator._ref,
    "Fn::If": TemplateEvaluator._if,
    "Fn::FindInMap": TemplateEvaluator._find_in_map,
    "Fn::Select": TemplateEvaluator._select,
    "Fn::Join": TemplateEvaluator._join,
    "Fn::Sub": TemplateEvaluator._sub,
    "Fn::GetAtt": TemplateEvaluator._get_att,
    "Fn::GetAZs": TemplateEvaluator._get_azs,
    "Fn::Split": TemplateEvaluator._split,
    "Condition": lambda self, name: self.condition(name),
}
