"""Mutation check for issue 12: make each bug-like edit in a copy-free way (edit, test, restore) and
confirm that the test meant to pin it fails.

Run from the repository root (about two minutes on a 2-core CPU):

    PYTHONPATH=$PWD .venv/bin/python scripts/mutation_check_issue12.py

Each entry: (what the edit does, file, [(old, new), ...], the test that must fail). Every file is
restored after its run, also on Ctrl-C. Exit status 1 if any edit goes unnoticed.
"""

import os
import subprocess
import sys

MUTATIONS = [
 ("ckpt straight write", "ganlib/training/checkpoint.py", [('with open(tmp, "wb") as fh:', 'with open(path, "wb") as fh:'), ("os.replace(tmp, path)", "pass")], "tests/test_pinned_details.py::test_checkpoint_goes"),
 ("fade order", "ganlib/training/progressive.py", [("torch.lerp(upsample2x(downsample2x(x)), x, self.alpha)", "torch.lerp(x, upsample2x(downsample2x(x)), self.alpha)")], "tests/test_pinned_details.py::test_fading"),
 ("last phase keeps zoom", "ganlib/data/augment.py", [("if last.rotation or last.translation or last.zoom:", "if last.rotation or last.translation:")], "tests/test_pinned_details.py::test_strict_schedule_refuses_a_range_left_in_the_last_phase"),
 ("zoom may widen", "ganlib/data/augment.py", [('''enumerate(zip(phases, phases[1:])):
                for name in ("rotation", "translation", "zoom"):''', '''enumerate(zip(phases, phases[1:])):
                for name in ("rotation", "translation"):''')], "tests/test_pinned_details.py::test_strict_schedule_refuses_a_range_that_widens"),
 ("mirror prob 0.4", "ganlib/data/augment.py", [("< 0.5", "< 0.4")], "tests/test_pinned_details.py::test_mirror_probability_is_one_half"),
 ("boundary floor", "ganlib/data/augment.py", [("int(b * total_steps + 0.5)", "int(b * total_steps)")], "tests/test_pinned_details.py::test_phase_boundaries_round_half_up_and_the_trainer_uses_the_step_it_trains"),
 ("phase index early", "ganlib/data/augment.py", [("sum(step >= s for s in starts[1:])", "sum(step >= s - 1 for s in starts[1:])")], "tests/test_pinned_details.py::test_phase_boundaries_round_half_up_and_the_trainer_uses_the_step_it_trains"),
 ("trainer batch one step early", "ganlib/training/phased.py", [("loss, stats = self.loss_fn(self.batch(self.step))", "loss, stats = self.loss_fn(self.batch(min(self.step + 1, cfg.steps - 1)))")], "tests/test_pinned_details.py::test_phase_boundaries_round_half_up_and_the_trainer_uses_the_step_it_trains"),
 ("commitment detaches z", "ganlib/models/vqvae2.py", [("F.mse_loss(z, q.detach())", "F.mse_loss(z.detach(), q)")], "tests/test_pinned_details.py::test_commitment_gradient_reaches_the_encoder_output"),
 ("EMA decay swapped", "ganlib/models/vqvae2.py", [("self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)", "self.cluster_size.mul_(1 - self.decay).add_(counts, alpha=self.decay)")], "tests/test_pinned_details.py::test_ema_cluster_sizes_keep_the_decay_and_add_the_complement"),
 ("restart undone", "ganlib/models/vqvae2.py", [("self.embed_sum.copy_(torch.where(dead.unsqueeze(1), new, self.embed_sum))", "pass")], "tests/test_pinned_details.py::test_dead_code_restart_survives_the_next_ema_update"),
 ("dragan no alpha", "ganlib/regularizers.py", [("x_tilde = real + alpha * (perturbed - real)", "x_tilde = perturbed")], "tests/test_pinned_details.py::test_dragan_uses_one_alpha_per_sample_and_the_std_of_the_whole_batch"),
 ("dragan per-feature std", "ganlib/regularizers.py", [("perturbed = real + c * real.std() * u", "perturbed = real + c * real.std(0) * u")], "tests/test_pinned_details.py::test_dragan_uses_one_alpha_per_sample_and_the_std_of_the_whole_batch"),
 ("gp ignores generator", "ganlib/regularizers.py", [("eps = _uniform(len(real), real, generator)", "eps = _uniform(len(real), real, None)")], "tests/test_pinned_details.py::test_penalties_draw_from_the_generator_they_are_given"),
 ("GradientPenalty drops generator", "ganlib/regularizers.py", [("return gradient_penalty(critic, real, fake, self.weight, self.target, self.generator)", "return gradient_penalty(critic, real, fake, self.weight, self.target)")], "tests/test_pinned_details.py::test_penalties_draw_from_the_generator_they_are_given"),
 ("DRAGANPenalty drops generator", "ganlib/regularizers.py", [("return dragan_penalty(critic, real, self.weight, self.k, self.c, self.generator)", "return dragan_penalty(critic, real, self.weight, self.k, self.c)")], "tests/test_pinned_details.py::test_penalties_draw_from_the_generator_they_are_given"),
 ("kid ddof 1", "ganlib/metrics/frechet.py", [("values.std(correction=0)", "values.std()")], "tests/test_pinned_details.py::test_kid_std_is_the_population_std_over_subsets"),
 ("ema no buffers", "ganlib/training/trainer.py", [("            b_ema.copy_(b)", "            pass")], "tests/test_pinned_details.py::test_ema_generator_copies_buffers_batchnorm_statistics"),
 ("nan guard isnan", "ganlib/training/trainer.py", [("bad = ~torch.isfinite(rows)", "bad = torch.isnan(rows)")], "tests/test_pinned_details.py::test_nan_guard_catches_plus_and_minus_infinity"),
 ("seed free on resume", "ganlib/training/trainer.py", [('resume_free_settings = ("steps",', 'resume_free_settings = ("seed", "steps",')], "tests/test_pinned_details.py::test_resuming_a_checkpoint_saved_with_another_seed_is_refused"),
 ("sample in train mode", "ganlib/training/trainer.py", [('''        was_training = G.training
        G.eval()
        try:
            return G(G.sample_latent''', '''        was_training = G.training
        try:
            return G(G.sample_latent''')], "tests/test_pinned_details.py::test_sample_draws_in_eval_mode_and_restores_train_mode"),
 ("sample leaves eval", "ganlib/training/trainer.py", [('''            return G(G.sample_latent(n, generator=rng, device=self.device)).float().cpu()
        finally:
            G.train(was_training)''', '''            return G(G.sample_latent(n, generator=rng, device=self.device)).float().cpu()
        finally:
            pass''')], "tests/test_pinned_details.py::test_sample_draws_in_eval_mode_and_restores_train_mode"),
 ("seed batch squares", "ganlib/training/batched.py", [(".sum(0).sqrt()", ".sum(0)")], "tests/test_pinned_details.py::test_seed_batch_reports_gradient_norms_not_their_squares"),
 ("plain sqrt", "ganlib/training/unrolled.py", [("_safe_sqrt(v) / bias2_sqrt", "v.sqrt() / bias2_sqrt")], "tests/test_pinned_details.py::test_unrolled_adam_has_a_finite_generator_gradient_where_a_gradient_is_exactly_zero"),
 ("checksum not verified", "ganlib/training/checkpoint.py", [("        if damaged:", "        if False:")], "tests/test_contract.py"),
 ("no stale cleanup", "ganlib/training/checkpoint.py", [("    remove_stale_temporaries(path)\n    tmp =", "    tmp =")], "tests/test_contract.py"),
 ("lr not applied", "ganlib/training/trainer.py", [('group["lr"] = getattr(cfg, f"lr_{player}")', 'pass')], "tests/test_contract.py"),
 ("EMA from initial G", "ganlib/training/trainer.py", [("self.G_ema.load_state_dict(self.G.state_dict())", "pass")], "tests/test_contract.py"),
 ("fit steps unchecked", "ganlib/training/trainer.py", [('as_int("steps", steps, low=0)', 'steps')], "tests/test_contract.py"),
 ("TensorSource NaN ok", "ganlib/data/__init__.py", [('check_finite("TensorSource data", data)', 'pass')], "tests/test_contract.py"),
 ("features NaN ok", "ganlib/metrics/frechet.py", [('check_finite(name, f, "features")', 'pass')], "tests/test_contract.py"),
 ("first difference only", "ganlib/training/checkpoint.py", [("(allowed if key in allow_changed else diffs).append((key, saved, now))", "(allowed if key in allow_changed else diffs).append((key, saved, now))\n        if diffs: break")], "tests/test_contract.py"),
 ("layout unchecked", "ganlib/training/trainer.py", [("state = load_checkpoint(path, required=self.checkpoint_layout())", "state = load_checkpoint(path)")], "tests/test_contract.py"),
]


def main() -> int:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    missed = []
    for name, path, edits, test in MUTATIONS:
        original = open(path).read()
        mutated = original
        for old, new in edits:
            if mutated.count(old) != 1:
                raise SystemExit(f"{name}: the text to edit is not found exactly once in {path}; update this script")
            mutated = mutated.replace(old, new)
        try:
            with open(path, "w") as fh:
                fh.write(mutated)
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
                                 capture_output=True, text=True, env=env)
        finally:
            with open(path, "w") as fh:
                fh.write(original)
        caught = run.returncode != 0
        print(f"{'caught' if caught else 'MISSED'}  {name}", flush=True)
        if not caught:
            missed.append(name)
    print(f"{len(MUTATIONS) - len(missed)} of {len(MUTATIONS)} edits caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
