"""Data machinery shared by the stages: readers, records, synthetic paired data, the window
store, the torch dataset and augmentations. No stage entry points live here."""
