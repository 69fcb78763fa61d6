/**
 * Micro-benchmark of policy evaluation: Portcullis's AccessManager next to CASL (@casl/ability) and
 * Casbin evaluating an equivalent policy in the same run, with 100 and 1,000 rules. Prints a
 * Markdown table (ns per decision, median of 5 batches) to stdout.
 *
 * Two policies, each written natively for every engine:
 * - RBAC: rule i lets role `role<i mod 50>` read `res<i>`; principals hold one role. Queries mix
 *   allowed and denied decisions over the whole rule range.
 * - Ownership: rule i lets anyone update a `res<i>` they own (`resource.ownerId == principal.id`).
 *   Casbin has no per-resource-type ABAC index, so its matcher compares the owner for every rule.
 *
 * Each engine gets its recommended setup: CASL builds one ability per role (or per user, for
 * ownership) once and reuses it, as its docs advise; Casbin uses `enforceSync` on an in-memory
 * model; Portcullis compiles the set once (`createAccessManager`). Results are checked to agree
 * before timing.
 *
 * `node bench/policy.mjs [--quick]`; `run.mjs` may import {@link runPolicyBench}.
 * @module
 */
import { fileURLToPath } from 'node:url'
import { AbilityBuilder, createMongoAbility, subject } from '@casl/ability'
import { newEnforcer, newModelFromString } from 'casbin'
import { createAccessManager } from '@portcullis/core'

const ROLES = 50
const QUERIES = 256
const BATCHES = 5

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Runs `op(i)` in calibrated batches; returns the median ns per call. */
function time(op, { warmupMs, batchMs }) {
  let n = 0
  let sink = 0
  const t0 = performance.now()
  while (performance.now() - t0 < warmupMs) sink += op(n++ & (QUERIES - 1)) ? 1 : 0
  const perOpMs = (performance.now() - t0) / Math.max(1, n)
  const iterations = Math.max(1000, Math.round(batchMs / perOpMs))
  const results = []
  for (let b = 0; b < BATCHES; b++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) sink += op(i & (QUERIES - 1)) ? 1 : 0
    results.push(Number(process.hrtime.bigint() - start) / iterations)
  }
  if (sink === -1) console.log(sink)
  return median(results)
}

// A deterministic generator, so every run asks the same questions.
function lcg(seed) {
  let s = seed >>> 0
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32
}

function rbacQueries(rules) {
  const rnd = lcg(42)
  return Array.from({ length: QUERIES }, (_, q) => {
    const i = Math.floor(rnd() * rules)
    // Half the queries come from the owning role (allowed), half from another role (denied).
    const role = q % 2 === 0 ? i % ROLES : (i + 1) % ROLES
    return { user: `u${q}`, role: `role${role}`, res: `res${i}`, allowed: q % 2 === 0 }
  })
}

function ownershipQueries(rules) {
  const rnd = lcg(7)
  return Array.from({ length: QUERIES }, (_, q) => {
    const i = Math.floor(rnd() * rules)
    const user = `u${q % 16}`
    const owner = q % 2 === 0 ? user : `u${(q + 1) % 16}`
    return { user, res: `res${i}`, record: { ownerId: owner }, allowed: q % 2 === 0 }
  })
}

async function engines(rules) {
  // Portcullis
  const rbacSet = {
    rules: Array.from({ length: rules }, (_, i) => ({
      id: `r${i}`,
      effect: 'allow',
      actions: [`res${i}:read`],
      roles: [`role${i % ROLES}`],
    })),
  }
  const ownSet = {
    resources: Object.fromEntries(
      Array.from({ length: rules }, (_, i) => [
        `res${i}`,
        {
          rules: [
            {
              id: `own${i}`,
              effect: 'allow',
              actions: ['update'],
              when: { attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' },
            },
          ],
        },
      ]),
    ),
  }
  const gRbac = createAccessManager({ policy: rbacSet })
  const gOwn = createAccessManager({ policy: ownSet })
  const principals = new Map()
  const principal = (id, role) => {
    const key = `${id}/${role}`
    let p = principals.get(key)
    if (p === undefined)
      principals.set(
        key,
        (p = { id, method: 'jwt', roles: role ? [role] : [], scopes: [], attributes: {} }),
      )
    return p
  }

  // CASL: one ability per role (RBAC) and per user (ownership), built once and reused.
  const caslByRole = new Map()
  const caslRole = (role) => {
    let a = caslByRole.get(role)
    if (a === undefined) {
      const { can, build } = new AbilityBuilder(createMongoAbility)
      for (let i = 0; i < rules; i++) if (`role${i % ROLES}` === role) can('read', `res${i}`)
      caslByRole.set(role, (a = build()))
    }
    return a
  }
  const caslByUser = new Map()
  const caslUser = (user) => {
    let a = caslByUser.get(user)
    if (a === undefined) {
      const { can, build } = new AbilityBuilder(createMongoAbility)
      for (let i = 0; i < rules; i++) can('update', `res${i}`, { ownerId: user })
      caslByUser.set(user, (a = build()))
    }
    return a
  }

  // Casbin: RBAC with role grouping; ownership as an ABAC matcher over the request object.
  const rbacModel = newModelFromString(`
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
`)
  const cRbac = await newEnforcer(rbacModel)
  await cRbac.addPolicies(
    Array.from({ length: rules }, (_, i) => [`role${i % ROLES}`, `res${i}`, 'read']),
  )
  const ownModel = newModelFromString(`
[request_definition]
r = sub, obj, act
[policy_definition]
p = type, act
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = r.obj.type == p.type && r.act == p.act && r.obj.ownerId == r.sub
`)
  const cOwn = await newEnforcer(ownModel)
  await cOwn.addPolicies(Array.from({ length: rules }, (_, i) => [`res${i}`, 'update']))

  const rq = rbacQueries(rules)
  const oq = ownershipQueries(rules)
  for (const q of rq) await cRbac.addGroupingPolicy(q.user, q.role)
  const caslSubjects = oq.map((q) => subject(q.res, { ...q.record }))
  // Inputs built once, as each engine's are: the timing covers the decision only.
  const gRbacInputs = rq.map((q) => ({
    principal: principal(q.user, q.role),
    action: `${q.res}:read`,
  }))
  const gOwnInputs = oq.map((q) => ({
    principal: principal(q.user, ''),
    action: `${q.res}:update`,
    resourceType: q.res,
    resource: q.record,
  }))
  const casbinObjects = oq.map((q) => ({ type: q.res, ownerId: q.record.ownerId }))

  return {
    rbac: {
      queries: rq,
      ops: {
        portcullis: (k) => gRbac.evaluate(gRbacInputs[k]).allowed,
        casl: (k) => caslRole(rq[k].role).can('read', rq[k].res),
        casbin: (k) => cRbac.enforceSync(rq[k].user, rq[k].res, 'read'),
      },
    },
    ownership: {
      queries: oq,
      ops: {
        portcullis: (k) => gOwn.evaluate(gOwnInputs[k]).allowed,
        casl: (k) => caslUser(oq[k].user).can('update', caslSubjects[k]),
        casbin: (k) => cOwn.enforceSync(oq[k].user, casbinObjects[k], 'update'),
      },
    },
  }
}

/**
 * Runs the benchmark and returns its Markdown table (and the raw figures).
 * @param {{ quick?: boolean }} [options]
 * @returns {Promise<{ markdown: string, rows: { policy: string, rules: number, engine: string, ns: number }[] }>}
 */
export async function runPolicyBench(options = {}) {
  const timing = options.quick ? { warmupMs: 50, batchMs: 40 } : { warmupMs: 300, batchMs: 200 }
  const rows = []
  for (const rules of [100, 1000]) {
    const e = await engines(rules)
    for (const policy of ['rbac', 'ownership']) {
      const { queries, ops } = e[policy]
      // The engines must agree before their speed means anything.
      for (const [engine, op] of Object.entries(ops))
        queries.forEach((q, k) => {
          if (op(k) !== q.allowed)
            throw new Error(`${engine} disagrees on ${policy} query ${k} (${rules} rules)`)
        })
      for (const [engine, op] of Object.entries(ops))
        rows.push({ policy, rules, engine, ns: time(op, timing) })
    }
  }
  const cell = (policy, rules, engine) =>
    Math.round(rows.find((r) => r.policy === policy && r.rules === rules && r.engine === engine).ns)
  const lines = [
    '| policy | rules | Portcullis (ns/op) | CASL 6 (ns/op) | Casbin 5 (ns/op) |',
    '| :--- | ---: | ---: | ---: | ---: |',
  ]
  for (const policy of ['rbac', 'ownership'])
    for (const rules of [100, 1000])
      lines.push(
        `| ${policy === 'rbac' ? 'RBAC (role → resource:read)' : 'ownership (resource.ownerId == principal.id)'} | ${rules.toLocaleString('en-US')} | ${cell(policy, rules, 'portcullis').toLocaleString('en-US')} | ${cell(policy, rules, 'casl').toLocaleString('en-US')} | ${cell(policy, rules, 'casbin').toLocaleString('en-US')} |`,
      )
  const markdown = `${lines.join('\n')}\n\nMedian of ${BATCHES} batches, ns per decision, ${QUERIES} rotating queries (half allowed, half denied), Node ${process.version}.\n`
  return { markdown, rows }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { markdown } = await runPolicyBench({ quick: process.argv.includes('--quick') })
  process.stdout.write(markdown)
}
