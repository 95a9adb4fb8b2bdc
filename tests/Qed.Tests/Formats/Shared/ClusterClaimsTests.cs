using Qed.Formats.Shared;

namespace Qed.Tests.Formats.Shared;

public class ClusterClaimsTests
{
    [Fact]
    public void AClaimHoldsExactlyItsClusters()
    {
        var guard = new Lock();
        var claims = new ClusterClaims(guard);
        lock (guard)
        {
            Assert.Null(claims.FindHolderLocked(10, 3));
            var claim = claims.ClaimLocked(10, 3);
            Assert.NotNull(claims.FindHolderLocked(12, 1));
            Assert.NotNull(claims.FindHolderLocked(8, 3));
            Assert.Null(claims.FindHolderLocked(13, 5));
            Assert.Null(claims.FindHolderLocked(0, 10));
            Assert.Equal(3, claims.CountLocked);
            Assert.NotNull(claims.ReleaseLocked(claim, 10, 3)); // looked up above: a waiter's signal exists
            Assert.Equal(0, claims.CountLocked);
            Assert.Null(claims.FindHolderLocked(10, 3));
            var unwatched = claims.ClaimLocked(20, 1);
            Assert.Null(claims.ReleaseLocked(unwatched, 20, 1)); // nobody waited: no signal was ever made
        }
    }

    [Fact]
    public async Task AWaiterIsReleasedOnlyWhenTheHoldEnds()
    {
        var guard = new Lock();
        var claims = new ClusterClaims(guard);
        ClusterClaims.Claim claim;
        Task wait;
        lock (guard)
        {
            claim = claims.ClaimLocked(5, 1);
            wait = claims.FindHolderLocked(5, 1)!;
            Assert.Same(wait, claims.FindHolderLocked(5, 1)); // every waiter shares one signal
        }
        await Task.Delay(20);
        Assert.False(wait.IsCompleted);
        TaskCompletionSource? released;
        lock (guard) released = claims.ReleaseLocked(claim, 5, 1);
        Assert.False(wait.IsCompleted, "the signal is set by the releaser once out of the lock");
        released!.SetResult();
        await wait.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void ReleasedClaimsAreReusedWithAFreshSignal()
    {
        var guard = new Lock();
        var claims = new ClusterClaims(guard);
        lock (guard)
        {
            var first = claims.ClaimLocked(1, 1);
            var oldSignal = claims.FindHolderLocked(1, 1)!;
            claims.ReleaseLocked(first, 1, 1)!.SetResult();
            var second = claims.ClaimLocked(2, 1);
            Assert.Same(first, second);
            var newSignal = claims.FindHolderLocked(2, 1)!;
            Assert.NotSame(oldSignal, newSignal);
            Assert.False(newSignal.IsCompleted);
        }
    }
}
