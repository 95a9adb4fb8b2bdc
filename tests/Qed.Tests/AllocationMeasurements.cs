namespace Qed.Tests;

/// <summary>
/// Tests that measure what a call allocates with <see cref="GC.GetTotalAllocatedBytes(bool)"/>, which counts the whole
/// process: they run alone, after the parallel tests, so other tests' allocations do not land in their figures.
/// </summary>
[CollectionDefinition(nameof(AllocationMeasurements), DisableParallelization = true)]
public sealed class AllocationMeasurements;
