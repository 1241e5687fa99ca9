"""CloudFormation stack updates as CloudFormation does them, on top of moto's update_stack.

moto 5.2's update compares each resource's template text only: a service whose `TaskDefinition: !Ref X`
text is unchanged is not updated when X gets a new revision, resources are updated in template order,
and a task definition update registers the new revision from the raw (PascalCase) properties. CloudFormation
updates every resource whose resolved properties change, in dependency order, and replaces a task
definition with a new revision. This module patches those three things (LocalAws installs it), and lets
the rehearsal run a custom resource's code at its place in that order (`hooks`).
"""

from __future__ import annotations

import re
from typing import Any, Callable

Hook = Callable[[str], None]


def references(node: Any) -> set[str]:
    """Logical ids a resource's JSON refers to (Ref, Fn::GetAtt, ${X} / ${X.Attr} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".", 1)[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                if isinstance(text, str):
                    found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([A-Za-z0-9.]+)\}", text)}
                if isinstance(value, list) and len(value) > 1:
                    found |= references(value[1])
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def _depends(resource: dict[str, Any]) -> set[str]:
    depends = resource.get("DependsOn") or []
    return {depends} if isinstance(depends, str) else set(depends)


# Types CloudFormation replaces on every update (a new physical id: what refers to it changes too). A
# resource updated in place keeps its Ref/GetAtt values, so what refers to it is not updated.
REPLACED_ON_UPDATE = {"AWS::ECS::TaskDefinition", "AWS::Lambda::LayerVersion"}


def plan(old: dict[str, Any], new: dict[str, Any], modified: list[str], added: list[str],
         extra_edges: dict[str, set[str]] | None = None) -> list[str]:
    """Every resource CloudFormation would update (text changed, or it refers to a resource replaced by
    this update), in dependency order. `extra_edges`: logical id -> ids it must follow (dependencies
    through resources the rehearsal stands in for)."""
    refs = {lid: references(r.get("Properties", {})) & set(new) for lid, r in new.items()}
    changed = set(modified) | set(added)
    grew = True
    while grew:
        grew = False
        replaced = {lid for lid in changed if new.get(lid, {}).get("Type") in REPLACED_ON_UPDATE}
        for lid in new:
            if lid in old and lid not in changed and refs[lid] & replaced:
                changed.add(lid)
                grew = True
    order: list[str] = []
    seen: set[str] = set()

    def visit(lid: str, stack: tuple[str, ...] = ()) -> None:
        if lid in seen or lid in stack or lid not in new:
            return
        for dep in sorted(refs[lid] | _depends(new[lid]) | (extra_edges or {}).get(lid, set())):
            visit(dep, stack + (lid,))
        seen.add(lid)
        order.append(lid)

    for lid in new:
        visit(lid)
    return [lid for lid in order if lid in changed and lid in old]


class UpdateFidelity:
    """Installed by LocalAws: the patches, the hooks (("before"|"after", logical id) -> callable) and the
    dependency edges the rehearsal adds for stood-in resources."""

    def __init__(self) -> None:
        self.hooks: dict[tuple[str, str], Hook] = {}
        self.extra_edges: dict[str, set[str]] = {}
        self.updated: list[str] = []     # logical ids updated by the last update, in order
        self.resources_map: Any = None   # moto's resources of the update in progress (what the hooks resolve against)

    def install(self, patch: Callable[[Any, str, Any], None]) -> None:
        import moto.cloudformation.parsing as parsing
        from moto.ecs.models import TaskDefinition, ecs_backends

        fidelity = self
        original_diff = parsing.ResourceMap.build_resource_diff
        original_update = parsing.parse_and_update_resource

        def build_resource_diff(resource_map: Any, other_template: dict[str, Any], parameters: Any = None) -> dict[str, Any]:
            actions = original_diff(resource_map, other_template, parameters)
            old = resource_map._resource_json_map
            actions["Modify"] = plan(old, other_template["Resources"], actions["Modify"], actions["Add"], fidelity.extra_edges)
            fidelity.updated = []
            return actions

        def parse_and_update_resource(logical_id: str, resource_json: dict, resources_map: Any, account_id: str, region_name: str) -> Any:
            if resources_map[logical_id] is None:   # its Condition is false: never created, nothing to update
                return None
            fidelity.resources_map = resources_map
            before = fidelity.hooks.get(("before", logical_id))
            if before is not None:
                before(logical_id)
            result = original_update(logical_id, resource_json, resources_map, account_id, region_name)
            fidelity.updated.append(logical_id)
            after = fidelity.hooks.get(("after", logical_id))
            if after is not None:
                after(logical_id)
            return result

        def update_task_definition(cls: Any, original_resource: Any, new_resource_name: str, cloudformation_json: Any,
                                   account_id: str, region_name: str) -> Any:
            # CloudFormation replaces a task definition: a new revision of the family, registered from the
            # template's properties the way a create registers them; the old revision is deregistered.
            created = TaskDefinition.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
            ecs_backends[account_id][region_name].deregister_task_definition(original_resource.arn)
            return created

        from moto.awslambda.models import LambdaFunction

        original_layers = LambdaFunction._get_layers_data

        def get_layers_data(function: Any, layers: list[Any]) -> Any:
            # A stack update hands moto's Lambda the resolved LayerVersion objects, not their ARNs.
            return original_layers(function, [getattr(layer, "arn", layer) for layer in layers])

        patch(LambdaFunction, "_get_layers_data", get_layers_data)
        patch(parsing.ResourceMap, "build_resource_diff", build_resource_diff)
        patch(parsing, "parse_and_update_resource", parse_and_update_resource)
        patch(TaskDefinition, "update_from_cloudformation_json", classmethod(update_task_definition))
