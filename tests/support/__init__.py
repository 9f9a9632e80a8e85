"""Test helpers shared by every area: the kinase runner, local Kinesis Video, watch and worker stacks, ops fakes."""
