/**
 * The policy language: what a policy set looks like as data (JSON, YAML or TypeScript), and what
 * evaluating one returns.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { AccessLevel, AccessResult, Principal, ResourceType } from '../types.js'

/** Rule categories, for reports and lint; they do not change evaluation. */
export type PolicyCategory = 'rbac' | 'abac' | 'ownership' | 'time' | 'network' | 'risk'

/** The categories, in documentation order. */
export const POLICY_CATEGORIES: readonly PolicyCategory[] = Object.freeze([
  'rbac',
  'abac',
  'ownership',
  'time',
  'network',
  'risk',
])

/** What a matching rule does. */
export type PolicyEffect = 'allow' | 'deny'

/** Condition operators. */
export type ConditionOperator =
  | 'eq'
  | 'ne'
  | 'in'
  | 'nin'
  | 'lt'
  | 'lte'
  | 'gt'
  | 'gte'
  | 'contains'
  | 'startsWith'
  | 'endsWith'
  | 'exists'
  | 'cidr'
  | 'within'

/** Every operator, for validation and suggestions. */
export const CONDITION_OPERATORS: readonly ConditionOperator[] = Object.freeze([
  'eq',
  'ne',
  'in',
  'nin',
  'lt',
  'lte',
  'gt',
  'gte',
  'contains',
  'startsWith',
  'endsWith',
  'exists',
  'cidr',
  'within',
])

/** A JSON value usable as a literal in a comparison. */
export type PolicyLiteral =
  string | number | boolean | null | readonly (string | number | boolean)[]

/** A time window for the `within` operator: week days and a time of day in a zone. */
export interface TimeWindowInput {
  /** Days the window is open: `mon`..`sun`. @default every day */
  readonly days?: readonly ('mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun')[]
  /** Opening time `HH:MM` (inclusive). @default '00:00' */
  readonly from?: string
  /** Closing time `HH:MM` (exclusive); earlier than `from` means the window spans midnight. @default '24:00' */
  readonly to?: string
  /** IANA time zone. @default 'UTC' */
  readonly tz?: string
}

/**
 * One comparison: an attribute (`principal.id`, `resource.ownerId`, `request.ip`,
 * `environment.now`, ...) against a literal `value` or another attribute `ref`.
 * @example `{ attr: 'resource.ownerId', op: 'eq', ref: 'principal.id' }`
 */
export interface ComparisonInput {
  readonly attr: string
  readonly op: ConditionOperator
  /** A literal (a list for `in`/`nin`/`cidr`, a {@link TimeWindowInput} for `within`). */
  readonly value?: PolicyLiteral | TimeWindowInput
  /** Another attribute to compare with (instead of `value`). */
  readonly ref?: string
}

/** A condition: a comparison, or `all`/`any`/`not` of conditions. */
export type ConditionInput =
  | ComparisonInput
  | { readonly all: readonly ConditionInput[] }
  | { readonly any: readonly ConditionInput[] }
  | { readonly not: ConditionInput }

/** A rule of an {@link AccessPolicy}. */
export interface PolicyRuleInput {
  /** Stable id, unique in the set; shown in traces, audit events and coverage reports. */
  readonly id: string
  /** What a match does. */
  readonly effect: PolicyEffect
  /** Permissions `resource:action` this rule is about; `*` segments are wildcards. */
  readonly actions: readonly string[]
  /** The rule applies only to principals holding one of these roles (inherited roles count). */
  readonly roles?: readonly string[]
  /** Extra condition over principal, resource, request and environment attributes. */
  readonly when?: ConditionInput
  /** Category, for reports. @default 'rbac' when `roles` is set and there is no condition, else 'abac' */
  readonly category?: PolicyCategory
  /** Higher priorities are decided first; within one priority deny overrides allow. @default 0 */
  readonly priority?: number
  /** Dry run: a match is reported as "would deny"/"would allow" and never decides. @default false */
  readonly shadow?: boolean
  /** Free text. */
  readonly description?: string
}

/** A role: its permissions and the roles it inherits from. */
export interface RoleInput {
  /** Roles whose permissions this role also has. */
  readonly inherits?: readonly string[]
  /** Permissions granted (allow rules with id `role:<name>`). */
  readonly permissions?: readonly string[]
  readonly description?: string
}

/**
 * Resource-specific rules for one {@link ResourceType}: their actions are relative
 * (`read` means `<permission>:read`) and they apply only when the request names a resource of
 * this type (a route's `resource` declaration or an explicit resource).
 */
export interface ResourcePolicyInput {
  /** The permission prefix of this resource's actions. @default the resource type */
  readonly permission?: string
  /** Rules; `actions` are relative to `permission`. */
  readonly rules: readonly PolicyRuleInput[]
}

/** Built-in risk signals. */
export type RiskSignalName =
  'newIp' | 'unusualHour' | 'recentFailures' | 'requestRate' | 'keyAge' | 'missingMfa'

/** Risk assessment: weighted signals → a score 0-100, and what happens above thresholds. */
export interface RiskInput {
  /** Signal name → weight (points added when the signal fires fully). */
  readonly signals: Readonly<Partial<Record<RiskSignalName, number>> & Record<string, number>>
  /** Deny at or above this score. @default 101 (never) */
  readonly denyAt?: number
  /** Require step-up authentication at or above this score. @default 101 (never) */
  readonly stepUpAt?: number
  /** What counts as already stepped up. @default `principal.attributes.claims.amr` contains `mfa` */
  readonly stepUpSatisfiedBy?: ConditionInput
  /** Permissions risk applies to. @default ['*'] */
  readonly actions?: readonly string[]
  /** `unusualHour`: the usual hours, as a time window. @default 07:00-20:00 UTC, every day */
  readonly usualHours?: TimeWindowInput
  /** `requestRate`: requests per minute per principal that count as fully risky. @default 120 */
  readonly ratePerMinute?: number
  /** `recentFailures`: denials within 15 minutes that count as fully risky. @default 5 */
  readonly failures?: number
  /** `keyAge`: age in days at which a credential counts as fully risky. @default 90 */
  readonly keyMaxAgeDays?: number
  /** `keyAge`: the attribute holding the credential's creation time (epoch ms, s or ISO). @default 'principal.attributes.keyCreatedAt' */
  readonly keyCreatedAttribute?: string
}

/** A policy set as data: what {@link compilePolicySet} accepts (and what policy files hold). */
export interface PolicySetInput {
  /** Format version. @default 1 */
  readonly version?: 1
  /** Free text name shown in reports. */
  readonly name?: string
  /** Roles, by name (ASCII identifiers). */
  readonly roles?: Readonly<Record<string, RoleInput>>
  /** The access policy: rules across resources. */
  readonly rules?: readonly PolicyRuleInput[]
  /** Resource policies keyed by resource type. */
  readonly resources?: Readonly<Record<string, ResourcePolicyInput>>
  /** Risk assessment. */
  readonly risk?: RiskInput
  /**
   * Declared custom attributes (`principal.attributes.tenant`, `resource.ownerId`, ...); when
   * given, lint warns about any other custom attribute a rule reads.
   */
  readonly attributes?: readonly string[]
  /** Action name → access level, for `AccessResult.level`. @default read/list/get → read, create/update/write/delete → write, admin/* → admin */
  readonly levels?: Readonly<Record<string, AccessLevel>>
}

/** The request attributes a policy can see. */
export interface PolicyRequestAttributes {
  readonly method?: string
  readonly path?: string
  readonly route?: string
  readonly ip?: string
  /** Route parameters (`/docs/:id` → `{ id }`). */
  readonly params?: Readonly<Record<string, string>>
  /** Request headers by lower-case name. */
  readonly headers?: Readonly<Record<string, string>>
}

/** What {@link AccessManager.evaluate} is asked about. */
export interface AccessRequest {
  /** Who asks; `null` (anonymous) is denied unless a rule without roles allows it. */
  readonly principal: Principal | null
  /** The permission asked for, `resource:action`. */
  readonly action: string
  /** The type of resource involved, which selects its resource policy. */
  readonly resourceType?: ResourceType
  /** The resource record (loaded by a resource loader), read as `resource.<field>`. */
  readonly resource?: unknown
  /** Request attributes. */
  readonly request?: PolicyRequestAttributes
  /** Extra environment attributes (`environment.<name>`); `now` comes from the manager's clock. */
  readonly environment?: Readonly<Record<string, unknown>>
}

/** How a policy decided. */
export type PolicyDecision = 'allow' | 'deny' | 'step-up'

/** The outcome of a policy evaluation. */
export interface PolicyAccessResult extends AccessResult {
  /** `allow`, `deny`, or `step-up` (allowed after a stronger authentication). */
  readonly decision: PolicyDecision
  /** Shadow rules that would have denied an allowed request (dry run). */
  readonly shadowDenied: readonly string[]
}

/** How one rule fared in an explanation. */
export interface RuleExplanation {
  readonly id: string
  readonly effect: PolicyEffect
  readonly priority: number
  readonly shadow: boolean
  /** `match`, `no-match`, `unknown` (an attribute was missing), `roles` (principal lacks the roles), `resource` (other resource type). */
  readonly outcome: 'match' | 'no-match' | 'unknown' | 'roles' | 'resource'
  /** The conditions with their values, e.g. `resource.ownerId ("bob") eq principal.id ("alice") → false`. */
  readonly detail: readonly string[]
}

/** A policy evaluation with every candidate rule explained. */
export interface PolicyExplanation extends PolicyAccessResult {
  /** Every rule about the action, in evaluation order. */
  readonly rules: readonly RuleExplanation[]
  /** Risk signals that fired, with their points. */
  readonly signals: Readonly<Record<string, number>>
}

/** A lint or compile finding, located by file and path. */
export interface PolicyDiagnostic {
  readonly severity: 'error' | 'warning'
  /** Stable kind: `unknown-attribute`, `unreachable-rule`, `shadowed-rule`, `priority-conflict`, `undefined-role`, `role-cycle`, `invalid`. */
  readonly kind:
    | 'invalid'
    | 'unknown-attribute'
    | 'unknown-operator'
    | 'role-cycle'
    | 'duplicate-id'
    | 'unreachable-rule'
    | 'shadowed-rule'
    | 'priority-conflict'
    | 'undefined-role'
  /** The file, when known. */
  readonly file?: string
  /** Where in the set: `rules[3].when.all[0].op`. */
  readonly path: string
  readonly message: string
}
