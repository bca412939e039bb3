"""The run record (common/record.py) of one `mlx finetune` run: one result row, named ``finetune``."""

import numpy as np

from common import record as run_record

ROW_NAME = "finetune"


def finetune_record(
    plan, result, predicted: np.ndarray, test, details: dict, started_at: str
) -> tuple[run_record.RunRecord, run_record.Predictions]:
    """``plan``: FinetunePlan; ``result``: FinetuneResult; ``test``: the encoded test split (row ids, labels).

    ``n_train`` counts every labelled training row the run used (fitted rows plus the validation rows
    that chose the checkpoint), as a probe's does (its C is chosen on the same kind of split), so
    runs at one training-set size line up in `mlx report`.
    """
    from embeddings.models import model_revision

    c = plan.config
    dataset = plan.dataset
    train, test_split = dataset.splits[c.train_split], dataset.splits[c.test_split]
    used = np.sort(np.concatenate([plan.fit_rows, plan.val_rows]))
    train_fingerprint = (
        train.fingerprint if len(used) == len(train) else run_record.subset_fingerprint(train.fingerprint, used)
    )
    row = run_record.ResultRow(
        name=ROW_NAME,
        method="finetune",
        setting=f"{c.n_epochs} ep, lr {c.lr:g}, batch {plan.global_batch}",
        params={k: v for k, v in c.as_dict().items() if k not in ("out", "force")},
        accuracy=result.accuracy,
        macro_f1=result.macro_f1,
        validation_accuracy=result.validation_accuracy,
        n_train=len(used),
        n_test=result.n_test,
        trainable_params=result.trainable_params,
        train_seconds=result.train_seconds,
        details={"n_fit": result.n_train, "n_validation": result.n_validation, **details},
    )
    record = run_record.RunRecord(
        kind="finetune",
        command="finetune",
        command_line=run_record.command_line(),
        started_at=started_at,
        finished_at=run_record.now(),
        config=c.as_dict(),
        model=run_record.ModelRef(c.model, model_revision(plan.source)),
        data=run_record.DataRef(
            dataset.name,
            dataset.fingerprint,
            (
                run_record.SplitRef("train", train_fingerprint, len(used)),
                run_record.SplitRef("test", test_split.fingerprint, len(test_split)),
            ),
            tuple(dataset.label_names),
        ),
        device=f"{plan.device} ({plan.dtype.value})",
        results=(row,),
        artifacts=("model", "learning_curve.png"),
        notes=tuple(result.notes),
    )
    return record, run_record.Predictions(test.row_ids, test.labels, {ROW_NAME: predicted})
