import { z } from 'zod';
import { job } from 'cairn';
import { byJson, prng, type Example } from './types.js';

const Transaction = z.object({
  txId: z.string(),
  account: z.string().min(1),
  amount: z.number().int(),
});
type Transaction = z.infer<typeof Transaction>;

export type BalanceUpdate = { kind: 'balance'; account: string; balance: number; txId: string } | { kind: 'alert'; account: string; balance: number; txId: string };

/**
 * Per-account running balance with an alert when an account goes negative (once per dip:
 * the alert re-arms when the balance is back at or above zero).
 */
export const accountBalance: Example<Transaction, BalanceUpdate> = {
  name: 'account-balance',
  description: 'running balance per account, alert when it goes negative',
  sink: 'balances',
  build() {
    const j = job('account-balance');
    j.source('transactions', { schema: Transaction, partitions: 2, partitionKey: (t) => t.account })
      .keyBy((t) => t.account)
      .process<BalanceUpdate>(
        'balance',
        (tx, ctx) => {
          const balance = ctx.state.value<number>('balance');
          const alerted = ctx.state.value<boolean>('alerted');
          const next = (balance.get() ?? 0) + tx.amount;
          balance.set(next);
          ctx.emit({ kind: 'balance', account: tx.account, balance: next, txId: tx.txId });
          if (next < 0 && !alerted.get()) {
            alerted.set(true);
            ctx.emit({ kind: 'alert', account: tx.account, balance: next, txId: tx.txId });
          } else if (next >= 0 && alerted.get()) {
            alerted.clear();
          }
        },
        { parallelism: 2 },
      )
      .sink('balances');
    return j.build();
  },
  generate(count, seed) {
    const random = prng(seed);
    return Array.from({ length: count }, (_, i) => {
      const account = `acct-${Math.floor(random() * 20)}`;
      const amount = Math.round((random() - 0.55) * 200);
      return { id: `tx-${seed}-${i}`, event: { txId: `tx-${seed}-${i}`, account, amount } };
    });
  },
  oracle(events) {
    const balances = new Map<string, number>();
    const alerted = new Set<string>();
    const out: BalanceUpdate[] = [];
    for (const tx of events) {
      const next = (balances.get(tx.account) ?? 0) + tx.amount;
      balances.set(tx.account, next);
      out.push({ kind: 'balance', account: tx.account, balance: next, txId: tx.txId });
      if (next < 0 && !alerted.has(tx.account)) {
        alerted.add(tx.account);
        out.push({ kind: 'alert', account: tx.account, balance: next, txId: tx.txId });
      } else if (next >= 0) alerted.delete(tx.account);
    }
    return out.sort(byJson);
  },
  canonical: (output) => [...(output as BalanceUpdate[])].sort(byJson),
};

export default accountBalance;
