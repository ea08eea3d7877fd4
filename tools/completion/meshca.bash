# meshca.bash - bash completion for meshca: commands, each command's flags (read from its own
# help, so it never drifts), kinds, flag values, and resource names from 'meshca get KIND -o name'.

# _meshca_store_args: the --store given on the line being completed, to pass on to meshca.
_meshca_store_args() {
    local i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case ${COMP_WORDS[i]} in
        --store) printf '%s\n' --store "${COMP_WORDS[i + 1]}" ;;
        --store=*) printf '%s\n' "${COMP_WORDS[i]}" ;;
        esac
    done
}

# _meshca_names KIND [MESH]: names of stored resources of KIND (meshes, dataplanes, secrets).
_meshca_names() {
    local -a store_args
    mapfile -t store_args < <(_meshca_store_args)
    "${COMP_WORDS[0]}" "${store_args[@]}" get "$1" ${2:+-m "$2"} -o name 2>/dev/null | sed 's|^[^/]*/||'
}

# _meshca_takes_value FLAG: true for a flag whose value is the next word.
_meshca_takes_value() {
    case $1 in
    --store | -f | --filename | -m | --mesh | -o | --output | -d | --dataplane | --from | \
        --status | --out | --out-dir | --reload | --reload-timeout | --interval | --now | \
        --common-name | --days | --key-type | --key-bits | --manifests | --listen | --tls-cert | \
        --tls-key | --tls-san | --ttl | --server | --ca-file | --token-file | --metrics | \
        --sign-workers | --lease-ttl)
        return 0
        ;;
    esac
    return 1
}

_meshca() {
    local cur prev cmd="" kind="" mesh="" i word
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}

    # The command is the first word that is neither a flag nor a flag's value; the kind the next.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if _meshca_takes_value "$word"; then
            ((i++))
            continue
        fi
        [[ $word == -* ]] && continue
        if [[ -z $cmd ]]; then
            cmd=$word
        elif [[ -z $kind ]]; then
            kind=$word
        fi
    done
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -m | --mesh) mesh=${COMP_WORDS[i + 1]} ;;
        --mesh=*) mesh=${COMP_WORDS[i]#--mesh=} ;;
        esac
    done

    # Values of flags.
    case $prev in
    --store)
        COMPREPLY=($(compgen -W "sqlite:// etcd://" -- "$cur"))
        return
        ;;
    -f | --filename | --from | --status | --tls-cert | --tls-key | --ca-file | --token-file)
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return
        ;;
    --out | --out-dir | --manifests)
        COMPREPLY=($(compgen -d -- "$cur"))
        compopt -o filenames 2>/dev/null
        return
        ;;
    -m | --mesh)
        COMPREPLY=($(compgen -W "$(_meshca_names meshes)" -- "$cur"))
        return
        ;;
    -d | --dataplane)
        COMPREPLY=($(compgen -W "$(_meshca_names dataplanes "$mesh")" -- "$cur"))
        return
        ;;
    -o | --output)
        # The formats the command's usage line lists: [-o text|json|yaml].
        local formats
        formats=$("${COMP_WORDS[0]}" help "$cmd" 2>/dev/null | sed -n 's/.*-o \([a-z|]*\).*/\1/p' | head -1)
        COMPREPLY=($(compgen -W "${formats//|/ }" -- "$cur"))
        return
        ;;
    --key-type)
        COMPREPLY=($(compgen -W "ec rsa" -- "$cur"))
        return
        ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--store --quiet --verbose --help --version" -- "$cur"))
        else
            # The commands meshca --help lists.
            COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" --help 2>/dev/null |
                sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p')" -- "$cur"))
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        # The flags the command's help lists, and the global --store, --quiet and --verbose.
        COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" help "$cmd" 2>/dev/null |
            grep -o -- '--[a-z][a-z0-9-]*' | sort -u) --store --quiet --verbose" -- "$cur"))
        return
    fi
    case $cmd in
    help)
        [[ -z $kind ]] && COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" --help 2>/dev/null |
            sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p')" -- "$cur"))
        ;;
    get)
        if [[ -z $kind ]]; then
            COMPREPLY=($(compgen -W "meshes dataplanes secrets" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_meshca_names "$kind" "$mesh")" -- "$cur"))
        fi
        ;;
    delete)
        if [[ -z $kind ]]; then
            COMPREPLY=($(compgen -W "mesh dataplane secret" -- "$cur"))
        else
            case $kind in
            mesh | meshes) kind=meshes ;;
            dataplane | dataplanes) kind=dataplanes ;;
            secret | secrets) kind=secrets ;;
            esac
            COMPREPLY=($(compgen -W "$(_meshca_names "$kind" "$mesh")" -- "$cur"))
        fi
        ;;
    inspect)
        [[ -z $kind ]] && COMPREPLY=($(compgen -W "meshes dataplanes leader" -- "$cur"))
        ;;
    ca)
        [[ -z $kind ]] && COMPREPLY=($(compgen -W "create" -- "$cur"))
        ;;
    esac
}

complete -F _meshca meshca
