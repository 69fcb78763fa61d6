/**
 * A decorated controller's routes, ready for an adapter to register: the instance built once,
 * each handler bound to it and checked to be a method, each route with its requirements.
 *
 * Reachable from `@portcullis/core/adapter`.
 * @packageDocumentation
 */
import { describeController, type ControllerRoute } from '../decorators/controller.js'
import { ConfigError } from '../errors.js'

/** A controller class (built with `new`) or an instance built elsewhere (`{ instance }`). */
export type ControllerInput<TController extends object> =
  (new () => TController) | { readonly instance: TController }

/** One route to register: {@link ControllerRoute} with its handler bound to the instance. */
export interface BoundControllerRoute extends ControllerRoute {
  /** Calls the handler method on the controller instance with the framework's arguments. */
  readonly invoke: (...args: readonly unknown[]) => unknown
}

/**
 * The controller's routes with their handlers bound.
 * @throws {ConfigError} for a class that declares no routes, or a route whose handler is not a method
 */
export function controllerRoutes<TController extends object>(
  controller: ControllerInput<TController>,
): BoundControllerRoute[] {
  const instance = typeof controller === 'function' ? new controller() : controller.instance
  const description = describeController(instance.constructor as new () => TController)
  return description.routes.map((route) => {
    const method = (instance as Record<string | symbol, unknown>)[route.handler]
    if (typeof method !== 'function')
      throw new ConfigError(`${String(route.handler)} is not a method`)
    return { ...route, invoke: (...args) => method.apply(instance, args) as unknown }
  })
}
