"""The lab's Prometheus: its configuration and the ``up --with prometheus`` flag."""

from __future__ import annotations

import yaml

from zdd_swarm.lab import _prometheus
from zdd_swarm.lab.__main__ import build_parser


def test_it_scrapes_running_tasks_of_labelled_services_on_the_lab_network() -> None:
    config = yaml.safe_load(_prometheus.config_text())
    (job,) = config["scrape_configs"]
    (sd,) = job["dockerswarm_sd_configs"]
    assert (sd["role"], sd["port"], sd["host"]) == ("tasks", 8080, "unix:///var/run/docker.sock")
    keeps = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"] if r.get("action")}
    assert keeps == {
        "__meta_dockerswarm_service_label_prometheus_scrape": "true",
        "__meta_dockerswarm_task_desired_state": "running",
        "__meta_dockerswarm_network_name": "zdd-lab",
    }
    assert _prometheus.SCRAPE_LABEL == "prometheus.scrape"


def test_up_with_prometheus_is_a_flag_of_up() -> None:
    assert build_parser().parse_args(["up", "--with", "prometheus"]).extras == ["prometheus"]
    assert build_parser().parse_args(["up"]).extras == []
