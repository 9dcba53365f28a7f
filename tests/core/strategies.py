"""Hypothesis strategies for valid jobs, shared by the core's property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from fastwan_core import Job

sizes = st.integers(min_value=256, max_value=1280)

valid_jobs = st.builds(
    Job,
    musetalk_job_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    prompt=st.text(min_size=1, max_size=50).filter(str.strip),
    num_frames=st.integers(min_value=1, max_value=30).map(lambda k: 4 * k + 1),
    width=sizes,
    height=sizes,
    fps=st.integers(min_value=1, max_value=60),
    steps=st.integers(min_value=1, max_value=100),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
)
