"""Tooling for the Triton model repository in model_repo/: build, validate, hash, serve, bench.

Lives outside model_repo/ on purpose: Triton treats every folder of a repository as a model.
`repository` needs only the lean runtime requirements (the stack imports it before uploading);
`net`, `build`, `torchscript` and `serve` need the test tools (torch, nvidia-pytriton).
"""
