"""The joint objective: which scheme and pretext tasks, their weights, options and heads.

METHOD §1::

    L = λ_ctr·L_ctr + λ_stor·(CE_spatial + CE_temporal) + λ_pace·(CE_pace(v1) + CE_pace(v2))
        + λ_rot·(CE_rot(v1) + CE_rot(v2))             λ = 0.1, 1, 1, 1

Selection syntax (one syntax for weights everywhere: ``NAME=λ``):

* ``--contrastive byol`` / ``byol=0.1`` / ``none`` — the scheme and λ_ctr (default 0.1);
* ``--pretext stor,rot=0.5,pace`` / ``none`` — pretext tasks with heads; λ defaults to the
  task's ``default_weight``;
* ``--augment pace,rot`` / ``none`` — tasks whose plan steps and device transforms run
  without head or loss (a task in both lists is a pretext task);
* ``--set COMPONENT.OPTION=VALUE`` — options, also ``[pretext.NAME]`` / ``[contrastive.NAME]``
  tables in a TOML config.

Options are parsed once, here (:func:`build_component`): config tables < ``--set``, merged
over the declared defaults; a task's or scheme's ``build`` receives typed values.
``cstp data pairs`` builds its tasks through the same :func:`build_tasks`.

Log keys per step: ``terms/<owner>.<term>`` (raw), ``weighted/<owner>`` (λ·Σ terms),
``stats/<scheme>.<stat>`` (not optimised) and ``loss`` (the total).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn as nn

from cstp_cli.api import PretextTask, resolve_options
from cstp_cli.errors import PluginError, UsageError

#: λ_ctr when ``--contrastive NAME`` carries no ``=λ`` (METHOD §1).
DEFAULT_CONTRASTIVE_WEIGHT = 0.1


@dataclass(frozen=True)
class Selection:
    """What the user asked for, parsed but not yet built."""

    contrastive: str | None
    contrastive_weight: float
    pretext: dict[str, float | None]  # name → λ (None: the task's default_weight)
    augment: tuple[str, ...]


def _parse_weighted(text: str, flag: str) -> list[tuple[str, float | None]]:
    """``"stor,rot=0.5"`` → ``[("stor", None), ("rot", 0.5)]``; ``"none"``/``""`` → ``[]``."""
    out: list[tuple[str, float | None]] = []
    text = (text or "").strip()
    if text.lower() in ("", "none"):
        return out
    for item in text.split(","):
        name, sep, weight = item.strip().partition("=")
        name = name.strip()
        if not name:
            raise UsageError(f"{flag} has an empty name in {text!r}; use NAME[=WEIGHT],...")
        value: float | None = None
        if sep:
            try:
                value = float(weight)
            except ValueError:
                raise UsageError(f"{flag} {name}={weight!r}: the weight must be a number") from None
            if value < 0:
                raise UsageError(f"{flag} {name}={weight}: the weight must be >= 0")
        if any(n == name for n, _ in out):
            raise UsageError(f"{flag} names {name!r} twice")
        out.append((name, value))
    return out


def parse_selection(contrastive: str, pretext: str, augment: str) -> Selection:
    """Parse the three selection strings (see the module docstring); usage errors exit 2."""
    ctr = _parse_weighted(contrastive, "--contrastive")
    if len(ctr) > 1:
        raise UsageError(f"--contrastive takes one scheme (or none), got {contrastive!r}")
    aug = _parse_weighted(augment, "--augment")
    if any(w is not None for _, w in aug):
        raise UsageError("--augment takes names only (augmentations have no loss, hence no weight)")
    name, weight = ctr[0] if ctr else (None, None)
    return Selection(
        contrastive=name,
        contrastive_weight=DEFAULT_CONTRASTIVE_WEIGHT if weight is None else weight,
        pretext=dict(_parse_weighted(pretext, "--pretext")),
        augment=tuple(n for n, _ in aug),
    )


@dataclass
class TaskEntry:
    """One active pretext task (or augmentation) with its weight."""

    name: str
    task: PretextTask
    weight: float
    augment_only: bool


class Objective(nn.Module):
    """The weighted joint loss of METHOD §1 over a scheme and pretext heads.

    Holds the scheme (an ``nn.Module``) and one head per pretext task (``heads[name]``), so
    ``objective.parameters()`` are everything besides the encoder that trains.
    """

    def __init__(self, scheme: nn.Module | None, scheme_name: str | None, scheme_weight: float, entries: list[TaskEntry], feature_dim: int):
        super().__init__()
        self.scheme = scheme
        self.scheme_name = scheme_name
        self.scheme_weight = float(scheme_weight)
        self.entries = entries
        self.heads = nn.ModuleDict({e.name: e.task.head(feature_dim) for e in entries if not e.augment_only})

    @property
    def wants_feature_maps(self) -> bool:
        """Whether a pretext task with a loss reads the clips' conv maps (API ``uses_feature_maps``)."""
        return any(getattr(e.task, "uses_feature_maps", False) for e in self.entries if not e.augment_only)

    @property
    def tasks(self) -> list[PretextTask]:
        """Every active task instance (pretext and augment-only), for plans and augmentation."""
        return [e.task for e in self.entries]

    def weights(self) -> dict[str, float]:
        """λ per loss owner (scheme and pretext tasks)."""
        out = {self.scheme_name: self.scheme_weight} if self.scheme is not None else {}
        out.update({e.name: e.weight for e in self.entries if not e.augment_only})
        return out

    def forward(
        self,
        y1: torch.Tensor,
        y2: torch.Tensor,
        x1: torch.Tensor,
        x2: torch.Tensor,
        labels: Mapping[str, torch.Tensor],
        maps: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint loss from online features ``y1, y2 float[B, D]`` and clips ``x1, x2 float[B, 3, T, S, S]``.

        ``maps``: the clips' conv maps ``float[B, C, t, h, w]``, given to the tasks with
        ``uses_feature_maps`` (needed when :attr:`wants_feature_maps`).

        Returns ``(loss, logs)``: the scalar total and every logged scalar tensor (module docstring).
        """
        logs: dict[str, torch.Tensor] = {}
        parts: list[torch.Tensor] = []
        if self.scheme is not None:
            out = self.scheme(y1, y2, x1, x2)
            parts.append(self._owner(self.scheme_name, self.scheme_weight, out.terms, logs))
            for key, value in out.stats.items():
                logs[f"stats/{_prefixed(self.scheme_name, key)}"] = value.detach().float()
        for entry in self.entries:
            if entry.augment_only:
                continue
            if getattr(entry.task, "uses_feature_maps", False):
                if maps is None:
                    raise PluginError(f"pretext task {entry.name!r} reads feature maps, but none were passed to the objective")
                terms = entry.task.loss(y1, y2, labels, self.heads[entry.name], maps=maps)
            else:
                terms = entry.task.loss(y1, y2, labels, self.heads[entry.name])
            parts.append(self._owner(entry.name, entry.weight, terms, logs))
        loss = torch.stack(parts).sum()
        logs["loss"] = loss.detach()
        return loss, logs

    @staticmethod
    def _owner(owner: str, weight: float, terms: Mapping[str, torch.Tensor], logs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not terms:
            raise PluginError(f"{owner} returned no loss terms; a loss must return at least one named term")
        total = torch.stack([t.float() for t in terms.values()]).sum()
        for key, value in terms.items():
            logs[f"terms/{_prefixed(owner, key)}"] = value.detach().float()
        weighted = total * weight
        logs[f"weighted/{owner}"] = weighted.detach()
        return weighted


def _prefixed(owner: str, key: str) -> str:
    """``"spatial"`` → ``"stor.spatial"``; a term named like its owner (``"byol"``) stays as is."""
    return key if key == owner or key.startswith(owner + ".") else f"{owner}.{key}"


def _options_for(spec: Any, owner: str, given: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return resolve_options(spec.options, given, owner)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"--set {owner}: {exc.args[0] if exc.args else exc}") from None


def build_component(spec: Any, owner: str, given: Mapping[str, Any], *args: Any) -> Any:
    """``spec.build(*args, **options)`` with ``given`` (strings or TOML values) parsed once, here.

    The only place component options are parsed (issue 11): the component receives typed
    values. A bad name or value, or a value the component refuses (``ValueError``), is a
    usage error naming the component.
    """
    options = _options_for(spec, owner, given)
    try:
        return spec.build(*args, **options)
    except ValueError as exc:
        raise UsageError(f"--set {owner}: {exc.args[0] if exc.args else exc}") from None


def _check_sets(sets: Mapping[str, Any], active: set[str]) -> None:
    for comp in sets:
        if comp not in active:
            raise UsageError(
                f"--set {comp}.…: {comp!r} is not an active component (active: {', '.join(sorted(active)) or 'none'})"
            )


def build_tasks(
    selection: Selection,
    *,
    registry: Any = None,
    pretext_options: Mapping[str, Mapping[str, Any]] | None = None,
    sets: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[TaskEntry]:
    """The active pretext tasks of ``selection`` (``--pretext`` ones, then ``--augment``-only
    ones), built with parsed options: the one route of ``cstp pretrain`` and ``cstp data pairs``.

    ``pretext_options``: the config's ``[pretext.*]`` tables (inactive ones ignored);
    ``sets``: the ``--set`` table — naming a component that is not active (a task here, or
    ``selection.contrastive``) is a usage error; unknown task names raise
    :class:`PluginError` listing the installed ones.
    """
    if registry is None:
        from cstp_cli.plugins import get_registry

        registry = get_registry()
    sets = sets or {}
    names = list(selection.pretext) + [n for n in selection.augment if n not in selection.pretext]
    specs = {name: registry.pretext(name) for name in names}  # unknown names first: they list what is installed
    if selection.contrastive is not None:
        registry.scheme(selection.contrastive)
    _check_sets(sets, set(names) | ({selection.contrastive} if selection.contrastive else set()))
    entries = []
    for name in names:
        spec = specs[name]
        given = {**(pretext_options or {}).get(name, {}), **sets.get(name, {})}
        task = build_component(spec, name, given)
        augment_only = name not in selection.pretext
        task.augment_only = augment_only
        weight = selection.pretext.get(name)
        entries.append(TaskEntry(name, task, float(spec.default_weight if weight is None else weight), augment_only))
    return entries


def build_objective(
    selection: Selection,
    feature_dim: int,
    *,
    registry: Any = None,
    pretext_options: Mapping[str, Mapping[str, Any]] | None = None,
    contrastive_options: Mapping[str, Mapping[str, Any]] | None = None,
    sets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Objective:
    """Build the scheme, tasks (:func:`build_tasks`) and heads of ``selection`` with parsed options.

    ``pretext_options`` / ``contrastive_options``: the config's ``[pretext.*]`` /
    ``[contrastive.*]`` tables (tables of inactive components are ignored); ``sets``: the
    ``--set`` table (naming an inactive component is a usage error). Unknown names raise
    :class:`PluginError` listing the installed ones; nothing to learn from is a usage error.
    """
    if registry is None:
        from cstp_cli.plugins import get_registry

        registry = get_registry()
    if selection.contrastive is None and not selection.pretext:
        raise UsageError("nothing to learn from: --contrastive none and no --pretext; name a scheme or a pretext task")
    sets = sets or {}
    entries = build_tasks(selection, registry=registry, pretext_options=pretext_options, sets=sets)
    scheme = None
    if selection.contrastive is not None:
        spec = registry.scheme(selection.contrastive)
        given = {**(contrastive_options or {}).get(selection.contrastive, {}), **sets.get(selection.contrastive, {})}
        scheme = build_component(spec, selection.contrastive, given, feature_dim)
    return Objective(scheme, selection.contrastive, selection.contrastive_weight, entries, feature_dim)


def describe(objective: Objective) -> str:
    """One line such as ``0.1·byol + 1·stor + 1·rot + 1·pace (augment: pace, rot)``."""
    parts = [f"{w:g}·{n}" for n, w in objective.weights().items()]
    aug = [e.name for e in objective.entries if e.augment_only]
    text = " + ".join(parts)
    if aug:
        text += f"  (augment only: {', '.join(aug)})"
    return text
