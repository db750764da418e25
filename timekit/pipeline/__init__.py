"""The pipeline: runs that drive the collectors into the store, and the one assessment of the store.

`sampling`/`collect` measure and store; `assess` reads the store once and assesses it once
(`assess_store`) and publishes the clock state; `skewcheck` persists the skew verdicts.
"""
