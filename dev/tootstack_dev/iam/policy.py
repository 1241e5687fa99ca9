"""IAM policy evaluation for one principal's identity policies: is (action, resource, request context) allowed?

The rules implemented, from the IAM User Guide (https://docs.aws.amazon.com/IAM/latest/UserGuide/):
- reference_policies_evaluation-logic.html: an explicit Deny wins; otherwise some Allow must match; else
  the implicit deny.
- reference_policies_elements_action.html / _notaction.html: action names are case-insensitive, `*` and
  `?` wildcards.
- reference_policies_elements_resource.html: resource ARNs are case-sensitive, `*` and `?` wildcards within
  segments; a wildcard in the resource part (the sixth segment) spans `/` and `:`.
- reference_policies_elements_condition_operators.html: String*, Arn*, Bool, Null, ...IfExists; all keys
  of a Condition block must match (AND), any value of a key (OR); a key absent from the request context
  does not match, except for the negated operators and IfExists.
- reference_policies_condition-single-vs-multi-valued-context-keys.html: ForAllValues: holds when every
  request value matches (a negated operator: matches none of the policy values), and also when the key is
  absent or empty; ForAnyValue: holds when some request value matches (negated: some value matches none
  of the policy values), and never when the key is absent or empty. Any other qualifier is refused.

Only identity-based policies of one role are evaluated here (the stack uses no permission boundaries, SCPs
or session policies on its roles). No library on PyPI evaluates a request against a policy offline
(policy_sentry and policyuniverse write and expand policies), hence this small evaluator, tested in
tests/unit/test_iam_policy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable


class UnsupportedCondition(ValueError):
    """A condition operator this evaluator does not implement (an error, never a silent allow)."""


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    return wildcard_match(pattern, action, ignore_case=True)


def resource_matches(pattern: str, arn: str) -> bool:
    """ARN match: segment by segment for partition, service, region, account; the resource part whole."""
    if pattern == "*":
        return True
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) < 6 or len(a_parts) < 6:
        return wildcard_match(pattern, arn)
    return all(wildcard_match(p, a) for p, a in zip(p_parts, a_parts))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _string_values(value: Any) -> list[str]:
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(value)]


_OPERATORS = {
    "StringEquals": lambda p, v: p == v,
    "StringNotEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringNotEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: wildcard_match(p, v),
    "StringNotLike": lambda p, v: wildcard_match(p, v),
    "ArnEquals": resource_matches,   # ArnEquals and ArnLike behave alike (wildcards allowed in both)
    "ArnLike": resource_matches,
    "ArnNotEquals": resource_matches,
    "ArnNotLike": resource_matches,
    "Bool": lambda p, v: p.lower() == v.lower(),
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _context_values(context: dict[str, Any], key: str) -> list[str] | None:
    for name, value in context.items():  # condition key names are case-insensitive
        if name.lower() == key.lower():
            return _string_values(value)
    return None


def condition_matches(condition: dict[str, Any] | None, context: dict[str, Any]) -> bool:
    """Whether a statement's Condition block holds for the request context."""
    for raw_operator, keys in (condition or {}).items():
        qualifier, _, operator = raw_operator.rpartition(":")
        if_exists = operator.endswith("IfExists")
        operator = operator[: -len("IfExists")] if if_exists else operator
        for key, policy_values in keys.items():
            wanted = _string_values(policy_values)
            actual = _context_values(context, key)
            if operator == "Null":
                if (actual is None) != (wanted[0].lower() == "true"):
                    return False
                continue
            test = _OPERATORS.get(operator)
            if test is None:
                raise UnsupportedCondition(f"condition operator {raw_operator} is not evaluated")
            if qualifier not in ("", "ForAllValues", "ForAnyValue"):
                raise UnsupportedCondition(f"condition set operator {qualifier} is not evaluated")
            negated = operator in _NEGATED
            if actual is None and if_exists:
                continue

            def hit(value: str) -> bool:
                return any(test(pattern, value) for pattern in wanted)

            def value_matches(value: str) -> bool:   # a negated operator: the value matches none of the policy's
                return not hit(value) if negated else hit(value)

            if qualifier == "ForAllValues":
                ok = all(value_matches(v) for v in actual or ())   # true for an absent or empty key
            elif qualifier == "ForAnyValue":
                ok = any(value_matches(v) for v in actual or ())   # false for an absent or empty key
            elif actual is None:
                ok = negated
            elif negated:
                ok = not any(hit(v) for v in actual)
            else:
                ok = any(hit(v) for v in actual)
            if not ok:
                return False
    return True


@dataclass(frozen=True)
class Statement:
    """One statement of a policy, with where it comes from (for reports)."""

    policy: str                       # "<role logical id>/<inline policy name>" or a managed policy's name/ARN
    index: int
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Any = None
    sid: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.policy, self.index)

    @property
    def label(self) -> str:
        return f"{self.policy}#{self.sid or self.index}"

    def matches_action(self, action: str) -> bool:
        if self.not_actions:
            return not any(action_matches(p, action) for p in self.not_actions)
        return any(action_matches(p, action) for p in self.actions)

    def matches_resource(self, arn: str) -> bool:
        if self.not_resources:
            return not any(resource_matches(p, arn) for p in self.not_resources)
        return any(resource_matches(p, arn) for p in self.resources)

    def applies(self, action: str, arn: str, context: dict[str, Any]) -> bool:
        return self.matches_action(action) and self.matches_resource(arn) and condition_matches(self.condition, context)


def statements_of(policy: str, document: dict[str, Any]) -> list[Statement]:
    """The statements of a policy document (Statement may be one object or a list)."""
    out = []
    for index, raw in enumerate(_as_list(document.get("Statement"))):
        out.append(Statement(
            policy=policy, index=index, effect=raw.get("Effect", "Deny"),
            actions=tuple(_as_list(raw.get("Action"))), not_actions=tuple(_as_list(raw.get("NotAction"))),
            resources=tuple(_as_list(raw.get("Resource"))), not_resources=tuple(_as_list(raw.get("NotResource"))),
            condition=raw.get("Condition"), sid=raw.get("Sid", ""),
        ))
    return out


@dataclass
class Decision:
    allowed: bool
    allowed_by: list[Statement] = field(default_factory=list)   # the Allow statements that matched
    denied_resources: list[str] = field(default_factory=list)   # resources no Allow matched (or a Deny did)


def evaluate(statements: Iterable[Statement], action: str, resources: Iterable[str], context: dict[str, Any]) -> Decision:
    """Every resource of the call must be allowed (a call on two services needs both allowed)."""
    statements = list(statements)
    decision = Decision(allowed=True)
    for arn in resources:
        if any(s.effect == "Deny" and s.applies(action, arn, context) for s in statements):
            decision.allowed = False
            decision.denied_resources.append(arn)
            continue
        allowing = [s for s in statements if s.effect == "Allow" and s.applies(action, arn, context)]
        if not allowing:
            decision.allowed = False
            decision.denied_resources.append(arn)
        decision.allowed_by.extend(s for s in allowing if s not in decision.allowed_by)
    return decision
