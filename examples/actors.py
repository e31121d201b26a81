"""Actors: a bank account kept in one process, called from the driver and from tasks.

Written against Ray's API; ``import plait as ray`` is the only plait-specific line.
"""

import plait as ray


@ray.remote
class Account:
    def __init__(self, opening_balance):
        self.balance = opening_balance
        self.history = []

    def deposit(self, amount):
        self.balance += amount
        self.history.append(("deposit", amount))
        return self.balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError(f"cannot withdraw {amount}: balance is {self.balance}")
        self.balance -= amount
        self.history.append(("withdraw", amount))
        return self.balance

    def statement(self):
        return list(self.history), self.balance


@ray.remote
def pay_salaries(account, amounts):
    """A task holding the actor's handle calls it like the driver does."""
    return ray.get([account.deposit.remote(a) for a in amounts])[-1]


if __name__ == "__main__":
    ray.init(num_cpus=2)
    account = Account.remote(100)

    # Calls from one caller run in the order they were made, on the same instance.
    balances = ray.get([account.deposit.remote(10), account.withdraw.remote(30),
                        account.deposit.remote(5)])
    print("balances after each call:", balances)

    # A method that raises fails that call only; the actor keeps its state.
    try:
        ray.get(account.withdraw.remote(1_000))
    except ValueError:
        print("refused: a withdrawal larger than the balance")

    # Handles travel to tasks; their calls reach the same actor.
    print("after salaries:", ray.get(pay_salaries.remote(account, [50, 50])))
    history, balance = ray.get(account.statement.remote())
    print("history:", history)
    print("balance:", balance)

    # A killed actor raises ActorDiedError on every later call.
    ray.kill(account)
    try:
        ray.get(account.statement.remote())
    except ray.exceptions.RayActorError:
        print("after kill: the actor is dead")
    ray.shutdown()
