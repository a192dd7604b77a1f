"""The encoder, MAE pre-training and the dual-view classifier: shapes, gradients, equivalences, losses."""

import pytest
import torch

from emotic import EmoticForImageClassification, EmoticForPreTraining, EmoticModel

STRATEGIES = ["none", "mean", "concat", "concat_linear", "attention"]
LAYERS = 4  # tiny config depth
FUSION_LAYERS = [0, LAYERS // 2, LAYERS]  # right after the embeddings, middle, after the last block


def images(batch=3, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator)


def classifier(tiny_config, seed=0, **overrides):
    torch.manual_seed(seed)
    return EmoticForImageClassification(tiny_config(**overrides))


# --- every fusion strategy at fusion layers 0, middle and last ---------------------------------------------------

@pytest.mark.parametrize("fusion_layer", FUSION_LAYERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
class TestFusionStrategies:
    def test_logits_have_one_score_per_label(self, tiny_config, strategy, fusion_layer):
        model = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer).eval()
        out = model(images(), images(seed=1), labels=torch.tensor([0, 4, 7]), output_hidden_states=True)
        assert out.logits.shape == (3, 8)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert len(out.hidden_states) == 1 + LAYERS + (0 if strategy == "none" else 1)
        assert all(h.shape == (3, 17, 32) for h in out.hidden_states)

    def test_gradients_reach_the_auxiliary_view_unless_fusion_is_none(self, tiny_config, strategy, fusion_layer):
        model = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer)
        if strategy == "concat_linear":  # as after training: its auxiliary half starts at zero (tested below)
            with torch.no_grad():
                model.fusion.projection.weight[:, 32:].normal_(std=0.02)
        main, aux = images().requires_grad_(), images(seed=1).requires_grad_()
        model(main, aux, labels=torch.tensor([0, 4, 7])).loss.backward()
        assert main.grad.abs().sum() > 0
        if strategy == "none":
            assert aux.grad is None  # the baseline ignores the auxiliary view
        else:
            assert aux.grad.abs().sum() > 0
        unused = [name for name, p in model.named_parameters() if p.grad is None]
        assert unused == []  # every parameter takes part (DDP needs no find_unused_parameters)

    def test_eager_attention_equals_sdpa(self, tiny_config, strategy, fusion_layer):
        sdpa = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer).eval()
        eager = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer,
                           attn_implementation="eager").eval()
        assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
        eager.load_state_dict(sdpa.state_dict())
        with torch.no_grad():
            difference = (sdpa(images(), images(seed=1)).logits - eager(images(), images(seed=1)).logits).abs().max()
        assert difference <= 1e-5

    def test_gradient_checkpointing_changes_nothing(self, tiny_config, strategy, fusion_layer):
        plain = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer).train()
        checkpointed = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer).train()
        checkpointed.load_state_dict(plain.state_dict())
        checkpointed.activation_checkpointing_enable()
        assert checkpointed.is_activation_checkpointing
        labels = torch.tensor([0, 4, 7])
        loss_plain = plain(images(), images(seed=1), labels=labels).loss
        loss_checkpointed = checkpointed(images(), images(seed=1), labels=labels).loss
        loss_plain.backward()
        loss_checkpointed.backward()
        assert torch.allclose(loss_plain, loss_checkpointed, atol=1e-6)
        for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name

    def test_batch_of_n_equals_n_batches_of_one(self, tiny_config, strategy, fusion_layer):
        model = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer).eval()
        main, aux = images(4), images(4, seed=1)
        with torch.no_grad():
            batched = model(main, aux).logits
            one_by_one = torch.cat([model(main[i: i + 1], aux[i: i + 1]).logits for i in range(4)])
        assert (batched - one_by_one).abs().max() <= 1e-5

    def test_interpolate_pos_encoding_runs_at_another_resolution(self, tiny_config, strategy, fusion_layer):
        model = classifier(tiny_config, fusion_strategy=strategy, fusion_layer=fusion_layer).eval()
        with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
            model(images(size=48), images(size=48, seed=1))
        with torch.no_grad():
            out = model(images(size=48), images(size=48, seed=1), interpolate_pos_encoding=True,
                        output_hidden_states=True)
        assert out.logits.shape == (3, 8) and torch.isfinite(out.logits).all()
        assert out.hidden_states[-1].shape == (3, 1 + 36, 32)  # 6x6 patches


# --- the auxiliary view --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["mean", "concat", "concat_linear", "attention"])
def test_fusion_without_the_auxiliary_view_is_refused_naming_the_processor(tiny_config, strategy):
    model = classifier(tiny_config, fusion_strategy=strategy).eval()
    with pytest.raises(ValueError, match=f"fusion_strategy='{strategy}' needs pixel_values_aux.*EmoticImageProcessor"):
        model(images())
    with pytest.raises(ValueError, match="needs pixel_values_aux"):
        model.forward_features(images())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_forward_features_and_forward_head_are_the_forward(tiny_config, strategy):
    """timm's split of the forward: tokens after the last block, then pooling and the head."""
    model = classifier(tiny_config, fusion_strategy=strategy).eval()
    main, aux = images(), images(seed=1)
    with torch.no_grad():
        features = model.forward_features(main, aux)
        assert features.shape == (3, 17, 32)
        assert torch.allclose(model.forward_head(features), model(main, aux).logits, atol=1e-6)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (3, 32) and torch.allclose(model.classifier(pooled), model(main, aux).logits,
                                                          atol=1e-6)


def test_the_baseline_needs_no_auxiliary_view(tiny_config):
    model = classifier(tiny_config, fusion_strategy="none").eval()
    with torch.no_grad():
        assert torch.equal(model(images()).logits, model(images(), images(seed=3)).logits)


def test_aux_view_of_another_shape_is_a_clear_error(tiny_config):
    model = classifier(tiny_config).eval()
    with pytest.raises(ValueError, match="pixel_values_aux must have the shape of pixel_values"):
        model(images(), images(batch=2))


def test_wrong_channel_count_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch_size, 3, height, width\)"):
        EmoticModel(tiny_config())(torch.randn(2, 1, 32, 32))


def test_separate_aux_encoder_trains_its_own_copy(tiny_config):
    model = classifier(tiny_config, share_encoder=False, fusion_layer=2)
    assert len(model.aux_layers) == 2
    model(images(), images(seed=1), labels=torch.tensor([1, 2, 3])).loss.backward()
    assert model.aux_embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    assert model.aux_layers[1].mlp.fc2.weight.grad.abs().sum() > 0


def test_shared_encoder_runs_both_views_as_one_batch_through_the_first_blocks(tiny_config):
    model = classifier(tiny_config, fusion_layer=2).eval()
    batch_sizes = []
    hooks = [layer.register_forward_hook(lambda m, i, o: batch_sizes.append(o[0].shape[0])) for layer in
             model.emotic.layers]
    with torch.no_grad():
        plain = model(images(3), images(3, seed=1)).logits
        assert batch_sizes == [6, 6, 3, 3]  # 2B through blocks [0, 2), B after the fusion
        batch_sizes.clear()  # recording states: one view after the other (every returned state is one it used)
        recorded = model(images(3), images(3, seed=1), output_hidden_states=True).logits
        assert batch_sizes == [3, 3, 3, 3, 3, 3]
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(recorded, plain, rtol=1e-5, atol=1e-6)


# --- the encoder and MAE pre-training ------------------------------------------------------------------------------

def test_encoder_masks_only_when_asked(tiny_config):
    model = EmoticModel(tiny_config()).eval()
    plain = model(images())
    assert plain.mask is None and plain.last_hidden_state.shape == (3, 17, 32) and plain.pooler_output.shape == (3, 32)
    masked = model(images(), mask_ratio=0.75)
    assert masked.last_hidden_state.shape == (3, 1 + 4, 32) and masked.mask.sum(dim=1).eq(12).all()


def test_noise_makes_masking_deterministic_and_keeps_the_lowest_noise_patches(tiny_config):
    model = EmoticModel(tiny_config()).eval()
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(0))
    first, second = model(images(), noise=noise), model(images(), noise=noise)
    assert torch.equal(first.last_hidden_state, second.last_hidden_state)
    kept = first.mask == 0
    assert torch.equal(kept, noise <= noise.sort(dim=1).values[:, 3:4])  # 4 of 16 kept at ratio 0.75


def test_avg_and_cls_pooling(tiny_config):
    for pooling in ("avg", "cls"):
        model = EmoticModel(tiny_config(pooling=pooling)).eval()
        out = model(images(), output_hidden_states=True)
        tokens = out.hidden_states[-1]
        expected = tokens[:, 1:].mean(1) if pooling == "avg" else tokens[:, 0]
        assert torch.allclose(out.pooler_output, model.layernorm(expected))


def test_patchify_and_unpatchify_are_inverse(tiny_config):
    model = EmoticForPreTraining(tiny_config())
    pixels = images()
    assert model.patchify(pixels).shape == (3, 16, 8 * 8 * 3)
    assert torch.equal(model.unpatchify(model.patchify(pixels)), pixels)


def test_pretraining_loss_counts_only_masked_patches_and_falls_when_trained(tiny_config):
    torch.manual_seed(0)
    model = EmoticForPreTraining(tiny_config())
    out = model(images(), noise=torch.rand(3, 16))
    assert out.logits.shape == (3, 16, 192) and out.mask.sum() == 3 * 12
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    noise = torch.rand(3, 16)
    losses = []
    for _ in range(80):
        loss = model(images(), noise=noise).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.7 * losses[0]


def test_pretraining_runs_at_another_resolution(tiny_config):
    model = EmoticForPreTraining(tiny_config())
    out = model(images(size=48), interpolate_pos_encoding=True)
    assert out.logits.shape == (3, 36, 192) and torch.isfinite(out.loss)


# --- the classification loss ----------------------------------------------------------------------------------------

def test_loss_ignores_minus_one_frames_and_applies_weights_and_smoothing(tiny_config):
    model = classifier(tiny_config).eval()
    main, aux = images(4), images(4, seed=1)
    labels = torch.tensor([0, -1, 4, 7])
    with torch.no_grad():
        logits = model(main, aux).logits
        loss = model(main, aux, labels=labels).loss
    expected = torch.nn.functional.cross_entropy(logits[[0, 2, 3]], labels[[0, 2, 3]])
    assert torch.allclose(loss, expected, atol=1e-6)

    weights = [1.0, 2.0, 3.0, 1.0, 0.5, 1.0, 1.0, 4.0]
    weighted = classifier(tiny_config, class_weights=weights, label_smoothing=0.1).eval()
    weighted.load_state_dict(model.state_dict())
    with torch.no_grad():
        loss = weighted(main, aux, labels=labels).loss
    per_item = torch.nn.functional.cross_entropy(logits[[0, 2, 3]], labels[[0, 2, 3]], weight=torch.tensor(weights),
                                                 label_smoothing=0.1, reduction="none")
    assert torch.allclose(loss, per_item.sum() / 3, atol=1e-6)


def test_loss_with_num_items_in_batch_makes_accumulated_halves_equal_the_full_batch(tiny_config):
    model = classifier(tiny_config, class_weights=[1.0, 2.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0]).eval()
    main, aux, labels = images(4), images(4, seed=1), torch.tensor([1, 4, 4, 0])
    with torch.no_grad():
        full = model(main, aux, labels=labels).loss
        halves = sum(model(main[s], aux[s], labels=labels[s], num_items_in_batch=torch.tensor(4)).loss
                     for s in (slice(0, 2), slice(2, 4)))
    assert torch.allclose(full, halves, atol=1e-6)


def test_no_weight_decay_names_position_embeddings_and_tokens(tiny_config):
    names = EmoticForPreTraining(tiny_config()).no_weight_decay()
    assert names == {"emotic.embeddings.position_embeddings", "emotic.embeddings.cls_token", "decoder.mask_token"}


def test_no_split_modules_name_real_module_classes(tiny_config):
    model = classifier(tiny_config)
    classes = {type(module).__name__ for module in model.modules()}
    assert set(model._no_split_modules) <= classes


# --- concat_linear: the dual-view authors' channel-concatenation fusion --------------------------------------------

def test_concat_linear_starts_as_the_none_model_and_learns(tiny_config):
    baseline = classifier(tiny_config, fusion_strategy="none", fusion_layer=2).eval()
    fused = classifier(tiny_config, seed=1, fusion_strategy="concat_linear", fusion_layer=2).eval()
    missing, unexpected = fused.load_state_dict(baseline.state_dict(), strict=False)
    assert not unexpected and missing == ["fusion.projection.weight", "fusion.projection.bias"]
    with torch.no_grad():  # the projection starts as [I | 0]: the auxiliary view changes nothing yet
        torch.testing.assert_close(fused(images(), images(seed=1)).logits, baseline(images()).logits, rtol=0,
                                   atol=1e-6)
    fused.train()
    optimizer = torch.optim.SGD(fused.parameters(), lr=0.1)
    before = fused.fusion.projection.weight.detach().clone()
    fused(images(), images(seed=1), labels=torch.tensor([0, 4, 7])).loss.backward()
    assert fused.fusion.projection.weight.grad[:, 32:].abs().sum() > 0  # the auxiliary half gets a gradient
    optimizer.step()
    assert not torch.equal(fused.fusion.projection.weight, before)


def test_concat_linear_keeps_a_loaded_projection(tiny_config, tmp_path):
    model = classifier(tiny_config, fusion_strategy="concat_linear", fusion_layer=2)
    with torch.no_grad():
        model.fusion.projection.weight.normal_()
    model.save_pretrained(tmp_path)
    reloaded = EmoticForImageClassification.from_pretrained(tmp_path)
    assert torch.equal(reloaded.fusion.projection.weight, model.fusion.projection.weight)  # not re-initialised


# --- the other ABAW tracks: action units (multi-label) and valence-arousal (regression) ---------------------------

def _head_gradients(model, labels):
    """The loss and its gradient with respect to the head's outputs, for one batch of 4."""
    outputs = model(images(4), images(4, seed=1))
    logits = outputs.logits.detach().requires_grad_(True)
    loss = model.loss_function(labels, logits, model.config)
    loss.backward()
    return loss, logits.grad


def test_action_unit_loss_leaves_unannotated_units_out_and_weights_positives(tiny_config):
    model = classifier(tiny_config, num_labels=12, problem_type="multi_label_classification")
    labels = torch.randint(0, 2, (4, 12)).float()
    labels[0, 3], labels[2] = -1, float("nan")  # one unit of frame 0, every unit of frame 2: not annotated
    loss, gradient = _head_gradients(model, labels)
    assert torch.isfinite(loss)
    assert gradient[0, 3] == 0 and (gradient[2] == 0).all()  # nothing flows from what was not annotated
    assert (gradient[1] != 0).all() and (gradient[0, :3] != 0).all()
    annotated = labels.isfinite() & (labels >= 0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        model(images(4), images(4, seed=1)).logits[annotated], labels[annotated])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # the mean over annotated units

    weighted = classifier(tiny_config, num_labels=12, problem_type="multi_label_classification", pos_weight=[5.0] * 12)
    _, weighted_gradient = _head_gradients(weighted, labels)
    positive = labels == 1
    ratio = weighted_gradient[positive].abs() / gradient[positive].abs()
    assert (ratio > 1.5).all()  # positives pull harder: the rare-AU remedy
    assert torch.allclose(weighted_gradient[labels == 0], gradient[labels == 0])  # negatives as before


@pytest.mark.parametrize("loss", ["mse", "ccc"])
def test_valence_arousal_loss_leaves_unannotated_values_out(tiny_config, loss):
    model = classifier(tiny_config, num_labels=2, problem_type="regression", regression_loss=loss,
                       regression_range=[-1.0, 1.0], id2label={0: "valence", 1: "arousal"})
    labels = torch.tensor([[0.5, -0.2], [float("nan"), 0.3], [-0.7, float("nan")], [0.1, 0.9]])
    value, gradient = _head_gradients(model, labels)
    assert torch.isfinite(value)
    assert gradient[1, 0] == 0 and gradient[2, 1] == 0
    assert (gradient[labels.isfinite()] != 0).all()
    if loss == "ccc":  # 1 - CCC per output over its annotated frames, averaged: the metric's own CCC
        from emotic.training.metrics import valence_arousal_metrics

        predictions = model(images(4), images(4, seed=1)).logits.detach()
        scores = valence_arousal_metrics(predictions.numpy(), labels.numpy())
        assert value.item() == pytest.approx(1 - scores["va_score"], abs=1e-5)


def multitask_classifier(tiny_config, **overrides):
    return classifier(tiny_config, tasks=["va", "expr", "au"], regression_range=[-1.0, 1.0], **overrides)


def test_a_multitask_head_has_each_tracks_outputs_and_bounds_only_valence_and_arousal(tiny_config):
    from emotic.modeling.heads_emotic import ABAW_ACTION_UNITS, ABAW_EXPRESSION_LABELS, head_parts

    model = multitask_classifier(tiny_config)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert names == ["valence", "arousal", *ABAW_EXPRESSION_LABELS, *ABAW_ACTION_UNITS]
    assert [(track, outputs.start, outputs.stop, columns.start, columns.stop)
            for track, outputs, columns in head_parts(model.config)] == [
        ("va", 0, 2, 0, 2), ("expr", 2, 10, 2, 3), ("au", 10, 22, 3, 15)]  # ABAW7's file columns
    with torch.no_grad():
        model.classifier.bias.fill_(40.0)
        logits = model(images(4), images(4, seed=1)).logits
    assert logits.shape == (4, 22)
    assert (logits[:, :2] <= 1).all() and logits[:, :2].max() > 0.99  # valence-arousal squashed into [-1, 1]
    assert (logits[:, 2:] > 30).all()  # the logits of the classification tracks untouched


def test_multitask_loss_is_the_sum_of_the_tracks_losses_and_ignores_unannotated_values(tiny_config):
    from emotic.modeling.heads_emotic import expression_cross_entropy, multi_label_cross_entropy, regression_loss

    model = multitask_classifier(tiny_config, regression_loss="ccc", class_weights=[1.0, 2.0] * 4,
                                 pos_weight=[3.0] * 12)
    nan = float("nan")
    labels = torch.full((4, 15), nan)
    labels[0, :2], labels[1, :2], labels[3, :2] = torch.tensor([0.5, -0.2]), torch.tensor([-0.4, 0.6]), \
        torch.tensor([0.1, 0.0])  # frame 2: no valence-arousal
    labels[:, 2] = torch.tensor([4.0, -1.0, 6.0, nan])  # frames 1 and 3: no expression
    labels[1, 3:], labels[2, 3:] = torch.randint(0, 2, (2, 12)).float()  # frames 0 and 3: no action units
    loss, gradient = _head_gradients(model, labels)

    logits = model(images(4), images(4, seed=1)).logits.detach()
    expected = (regression_loss(labels[[0, 1, 3], :2], logits[[0, 1, 3], :2], model.config)
                + expression_cross_entropy(torch.tensor([4, 6]), logits[[0, 2], 2:10], model.config)
                + multi_label_cross_entropy(labels[1:3, 3:], logits[1:3, 10:], model.config))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # each track on its annotated frames, summed
    # nothing flows from what was not annotated; everything annotated pulls
    assert (gradient[2, :2] == 0).all() and (gradient[[1, 3], 2:10] == 0).all()
    assert (gradient[[0, 3], 10:] == 0).all()
    assert (gradient[[0, 1, 3], :2] != 0).all() and (gradient[[0, 2], 2:10] != 0).all()
    assert (gradient[1:3, 10:] != 0).all()
    marked = labels.clone()
    marked[3, 2] = -1.0  # Aff-Wild2's "not annotated" expression: as NaN
    assert model.loss_function(marked, logits, model.config).item() == pytest.approx(loss.item(), rel=1e-6)


def test_multitask_head_trains_from_full_model_gradients_on_partly_annotated_frames(tiny_config):
    model = multitask_classifier(tiny_config).train()
    labels = torch.full((4, 15), float("nan"))
    labels[:2, 2] = torch.tensor([1.0, 3.0])  # only two expressions annotated in the whole batch
    model(images(4), images(4, seed=1), labels=labels).loss.backward()
    head = model.classifier.weight.grad
    assert (head[2:10] != 0).any() and (head[:2] == 0).all() and (head[10:] == 0).all()
    assert model.emotic.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0  # the trunk learns


def test_multitask_labels_of_the_wrong_width_and_bad_configs_are_refused(tiny_config):
    model = multitask_classifier(tiny_config)
    with pytest.raises(ValueError, match=r"\(4, 15\) values per batch.*va 2, expr 1, au 12"):
        model(images(4), images(4, seed=1), labels=torch.zeros(4, 22))
    with pytest.raises(ValueError, match="two or more different tracks"):
        tiny_config(tasks=["va", "va"])
    with pytest.raises(ValueError, match="leave problem_type unset"):
        tiny_config(tasks=["va", "expr", "au"], problem_type="regression")
    with pytest.raises(ValueError, match="class_weights has 22 entries; expected 8 .* one per expression"):
        tiny_config(tasks=["va", "expr", "au"], class_weights=[1.0] * 22)
    with pytest.raises(ValueError, match="pos_weight=.*expected 12 positive numbers, one per action unit"):
        tiny_config(tasks=["va", "expr", "au"], pos_weight=[1.0] * 22)
    with pytest.raises(ValueError, match="has the 22 outputs"):
        tiny_config(tasks=["va", "expr", "au"], num_labels=8)


def test_regression_range_bounds_the_outputs_and_the_pipeline_returns_them_unchanged(tiny_config, tmp_path):
    from transformers import pipeline

    from emotic import EmoticImageProcessor

    model = classifier(tiny_config, num_labels=2, problem_type="regression", regression_range=[-1.0, 1.0],
                       id2label={0: "valence", 1: "arousal"})
    with torch.no_grad():
        model.classifier.bias.fill_(40.0)  # far outside the range before the bound
        outputs = model(images(4) * 10, images(4, seed=1) * 10).logits
        assert (outputs <= 1).all() and (outputs >= -1).all() and outputs.max() > 0.99
        assert torch.equal(model.forward_head(model.forward_features(images(4), images(4, seed=1))),
                           model(images(4), images(4, seed=1)).logits)  # timm's split gives the same values
    model.save_pretrained(tmp_path)
    EmoticImageProcessor(size=32, geometry="template").save_pretrained(tmp_path)
    image = (torch.rand(32, 32, 3) * 255).byte().numpy()
    scores = {entry["label"]: entry["score"] for entry in pipeline("image-classification", model=str(tmp_path))(image)}
    with torch.no_grad():
        processor = EmoticImageProcessor.from_pretrained(tmp_path)
        expected = model(**processor(image, return_tensors="pt")).logits[0]
    assert scores == pytest.approx({"valence": expected[0].item(), "arousal": expected[1].item()}, abs=1e-6)


def test_the_pipeline_gives_an_action_unit_model_independent_sigmoid_probabilities(tiny_config, tmp_path):
    from transformers import pipeline

    from emotic import EmoticImageProcessor

    names = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
    model = classifier(tiny_config, problem_type="multi_label_classification", id2label=dict(enumerate(names)))
    model.save_pretrained(tmp_path)
    EmoticImageProcessor(size=32, geometry="template").save_pretrained(tmp_path)
    image = (torch.rand(32, 32, 3) * 255).byte().numpy()
    scores = {e["label"]: e["score"] for e in pipeline("image-classification", model=str(tmp_path))(image, top_k=12)}
    with torch.no_grad():
        processor = EmoticImageProcessor.from_pretrained(tmp_path)
        expected = torch.sigmoid(model(**processor(image, return_tensors="pt")).logits[0])
    assert scores == pytest.approx(dict(zip(names, expected.tolist())), abs=1e-6)
    assert sum(scores.values()) != pytest.approx(1.0)  # not a softmax over the units
