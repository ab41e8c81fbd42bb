"""Test helpers: what TensorBoard itself reads from a log directory (its loaders and its HParams plugin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def accumulator(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def read_hparams(run_dir: Path) -> dict[str, plugin_data_pb2.HParamsPluginData]:
    """The hparams summaries of one run directory, by tag (experiment, session start, session end)."""
    try:
        content = accumulator(run_dir).PluginTagToContent("hparams")
    except KeyError:  # no hparams summaries at all
        return {}
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(data) for tag, data in content.items()}


def layout_charts(run_dir: Path) -> dict[str, list[str]]:
    """The run's Custom Scalars layout: chart title -> the tags (regular expressions) it overlays."""
    (event,) = accumulator(run_dir).Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    return {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}


def layout_margins(run_dir: Path) -> dict[str, list[tuple[str, str, str]]]:
    """The run's Custom Scalars margin charts: chart title -> its series as (value, lower, upper) tags."""
    (event,) = accumulator(run_dir).Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    return {
        chart.title: [(s.value, s.lower, s.upper) for s in chart.margin.series]
        for category in layout.category
        for chart in category.chart
        if chart.HasField("margin")
    }


def hparams_tab(logdir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """What the HParams tab gets for `tensorboard --logdir <logdir>`, from TensorBoard's own HParams plugin:
    the experiment (columns and metrics) and the rows (session groups) by name."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer, data_provider=provider)
    apps = hparams_plugin.HParamsPlugin(context).get_plugin_apps()

    def post(route: str, request: dict[str, Any]) -> dict[str, Any]:
        response = Client(apps[route], Response).post("/", data=json.dumps({"experimentName": "", **request}))
        assert response.status_code == 200, response.get_data(as_text=True)
        return json.loads(response.get_data(as_text=True))

    experiment = post("/experiment", {})
    groups = post("/session_groups", {"allowedStatuses": STATUSES, "startIndex": 0, "sliceSize": 1000})
    return experiment, {group["name"]: group for group in groups.get("sessionGroups", [])}
