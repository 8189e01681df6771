"""The training budget in the "Train VAE" widget: Quick / Standard / Thorough, minutes or exact steps,
the estimated duration before Train, and runs that do the steps the budget bought."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QLabel

from napari_imc_vae._napari import budget_box
from napari_imc_vae._napari.model_store import RunState
from napari_imc_vae._napari.train_form import EXACT_STEPS, MINUTES
from napari_imc_vae._napari.train_task import TrainPlan, TrainUpdate
from napari_imc_vae._napari.train_widget import TrainWidget
from napari_imc_vae.engine.training.budget import DEFAULT_BUDGET, PRESETS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FILE = "steinbock_img/20210305_NE_mockData5_003.ome.tiff"
PLUGIN = "napari-imc-vae"


@pytest.fixture
def train(make_napari_viewer, imc_testdata) -> TrainWidget:
    viewer = make_napari_viewer()
    viewer.open(str(imc_testdata / FILE), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train VAE")
    assert isinstance(widget, TrainWidget)
    widget.activity.setChecked(False)
    return widget


def _tiny(widget: TrainWidget) -> None:
    """A model that trains hundreds of steps a second on one CPU thread (steps untouched)."""
    f = widget.form
    f.patch.value, f.latent.value, f.hidden_width.value, f.depth.value = 8, 4, 32, 1
    f.batch.value, f.device.value = 32, "cpu"


def _minutes(widget: TrainWidget, minutes: float) -> None:
    widget.form.budget.value = MINUTES
    widget.form.minutes.value = minutes


def _shown(form, widget) -> bool:
    """The box and its label in the form are shown (the form need not be on screen)."""
    labels = [q for q in form.native.findChildren(QLabel) if q.text() == widget.label]
    return widget.native.isVisibleTo(form.native) and all(q.isVisibleTo(form.native) for q in labels)


def _finished_run(qtbot, widget: TrainWidget, monkeypatch) -> tuple[object, list]:
    """Train; returns the outcome and everything the worker yielded, in order."""
    yielded = []
    show = widget._on_yielded
    monkeypatch.setattr(widget, "_on_yielded", lambda u: (yielded.append(u), show(u)))
    with qtbot.waitSignal(widget.finished, timeout=120_000) as blocker:
        assert widget.train() is not None
    assert blocker.args[0] is not None, widget.progress_text.text()
    return blocker.args[0], yielded


def _planned_run_checks(outcome, yielded: list, start_step: int = 0) -> int:
    """The run yielded one plan first and then trained its steps; returns the planned steps."""
    plans = [u for u in yielded if isinstance(u, TrainPlan)]
    assert len(plans) == 1 and yielded[0] is plans[0]
    planned = plans[0].steps
    updates = [u for u in yielded[1:] if isinstance(u, TrainUpdate)]
    assert updates and all(r.run_steps == planned for u in updates for r in u.records)
    assert not outcome.stopped
    # the planned steps, or fewer when the budget's time ran out first (a busy machine)
    assert 0 < outcome.trained.step - start_step <= planned
    return planned


def test_budget_choices_show_their_own_box(train):
    form = train.form
    labels = [form.budget.native.itemText(i) for i in range(form.budget.native.count())]
    assert labels == [f"{name.title()} ({m:g} min)" for name, m in PRESETS.items()] + ["Minutes…", "Exact steps"]
    assert form.budget.value == DEFAULT_BUDGET and form.budget_minutes() == PRESETS[DEFAULT_BUDGET]
    assert not _shown(form, form.minutes) and not _shown(form, form.steps)

    _minutes(train, 2.5)
    assert _shown(form, form.minutes) and not _shown(form, form.steps)
    assert form.budget_minutes() == 2.5

    form.budget.value = EXACT_STEPS
    assert _shown(form, form.steps) and not _shown(form, form.minutes)
    assert form.budget_minutes() is None and form.train_config().steps == form.steps.value

    form.budget.value = "thorough"
    assert form.budget_minutes() == PRESETS["thorough"] and not _shown(form, form.steps)
    form.steps.value = 40  # a step count set (e.g. by a script) means exact steps
    assert form.budget.value == EXACT_STEPS and form.train_config().steps == 40


def test_estimate_appears_before_training_and_follows_the_settings(train, qtbot, monkeypatch):
    probes = []
    real = budget_box.estimate_step_rate
    monkeypatch.setattr(budget_box, "estimate_step_rate", lambda *a: (probes.append(a[0]), real(*a))[1])
    _tiny(train)
    _minutes(train, 0.05)
    box = train.estimate
    qtbot.waitUntil(lambda: box.label.text().startswith("Estimated: budget 0.05 min:"), timeout=60_000)
    rate = box.rate
    assert rate.steps_per_s > 0 and rate.batch_size == 32 and rate.device == "cpu"
    assert box.planned_steps == rate.steps_for(3.0)
    assert f"{box.planned_steps:,} steps" in box.label.text() and "steps/s" in box.label.text()
    # the many changes of _tiny and the budget made one timing, of the last settings
    assert probes == [5]

    # a new budget or step count is new text, not a new timing
    train.form.budget.value = EXACT_STEPS
    train.form.steps.value = 40
    qtbot.waitUntil(lambda: box.label.text().startswith("Estimated: 40 steps: about"), timeout=10_000)
    assert box.rate is rate and box.planned_steps == 40 and len(probes) == 1

    # the button times again, in a worker: the GUI thread is back before the rate is
    box.button.click()
    assert box.busy and "timing" in box.label.text()
    qtbot.waitUntil(lambda: not box.busy, timeout=60_000)
    assert box.rate is not rate and len(probes) == 2 and box.label.text().startswith("Estimated: 40 steps")

    # a model change is timed again
    train.form.latent.value = 6
    qtbot.waitUntil(lambda: len(probes) == 3 and not box.busy, timeout=60_000)
    assert box.label.text().startswith("Estimated: 40 steps")


def test_no_image_no_timing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train VAE")
    widget.estimate.button.click()
    assert not widget.estimate.busy and widget.estimate.planned_steps is None
    assert "No image checked" in widget.estimate.label.text()


def test_a_budget_in_minutes_trains_the_steps_it_planned(train, qtbot, monkeypatch):
    _tiny(train)
    _minutes(train, 0.05)
    shown = []
    train.estimate.estimated.connect(shown.append)  # the label is re-estimated soon after the run
    outcome, yielded = _finished_run(qtbot, train, monkeypatch)
    planned = _planned_run_checks(outcome, yielded)
    assert [t for t in shown if t.startswith("Planned:")] == [f"Planned: {yielded[0].text}"]
    assert yielded[0].text.startswith(f"budget 0.05 min: {planned:,} steps")
    assert train.status.state is RunState.DONE and train.estimate.button.isEnabled()


def test_exact_steps_then_resume_with_a_budget(train, qtbot, monkeypatch, tmp_path):
    _tiny(train)
    train.form.budget.value = EXACT_STEPS
    train.form.steps.value = 7
    outcome, yielded = _finished_run(qtbot, train, monkeypatch)
    # exact steps are planned too (timed, not changed): the plan says how long they take
    assert outcome.trained.step == 7 and _planned_run_checks(outcome, yielded) == 7
    assert yielded[0].text.startswith("7 steps: about")
    assert train.progress_bar.value() == 7
    # no stale "timing …" line after the run: the next run's estimate comes back by itself
    qtbot.waitUntil(lambda: train.estimate.label.text().startswith("Estimated: 7 steps: about"), timeout=30_000)

    path = train.save_model(str(tmp_path / "model.pt"))
    assert train.resume_from(str(path)) is not None
    _minutes(train, 0.02)
    monkeypatch.undo()  # the next run records its own updates
    outcome, yielded = _finished_run(qtbot, train, monkeypatch)
    _planned_run_checks(outcome, yielded, start_step=7)
